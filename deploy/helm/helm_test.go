// Package helm_test renders the chart in strait/ with the Helm library, as
// `helm install` does, for each value set in strait/ci/ and for values its
// schema must refuse. Every rendered object decodes strictly into its
// Kubernetes API type and is checked: replicas, spreading, the disruption
// budget, security, probes, ports away from an Istio sidecar, and RBAC
// equal to docs/kubernetes.md. The rendered gateway.yaml, with the pod's
// mounts and environment laid out in a directory, passes `strait gateway
// --check`.
package helm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/kubetest"

	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/straitmesh/strait/discovery/kube"
)

const (
	chartDir  = "strait"
	release   = "edge"
	namespace = "strait-system"
	podIP     = "10.1.2.3"
)

// istioPorts are the ports an Istio sidecar binds in the pod (15000,
// 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15090) and istiod's and
// Istio gateways' (15012, 15443).
var istioPorts = []int{15000, 15001, 15004, 15006, 15008, 15009, 15012, 15020, 15021, 15090, 15443}

// loadChart loads the chart directory as `helm install ./strait` does.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart %s: %v", chartDir, err)
	}
	return ch
}

// render renders the chart with the given values over its defaults,
// validating them against values.schema.json first, as `helm install
// --dry-run` does without a cluster.
func render(ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, chartutil.DefaultCapabilities.Copy())
	if err != nil {
		return nil, fmt.Errorf("values of release %s: %w", release, err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("render release %s: %w", release, err)
	}
	return out, nil
}

// readValues reads a values file of strait/ci.
func readValues(t *testing.T, name string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, "ci", name))
	if err != nil {
		t.Fatalf("read values %s: %v", name, err)
	}
	return v
}

// objects are the rendered manifests decoded into API types.
type objects struct {
	deployment   *appsv1.Deployment
	configMaps   map[string]*corev1.ConfigMap
	services     map[string]*corev1.Service
	pdb          *policyv1.PodDisruptionBudget
	netpol       *networkingv1.NetworkPolicy
	sa           *corev1.ServiceAccount
	clusterRoles []*rbacv1.ClusterRole
	crBindings   []*rbacv1.ClusterRoleBinding
	roles        []*rbacv1.Role
	roleBindings []*rbacv1.RoleBinding
	monitors     []*unstructured.Unstructured
}

// decode decodes every manifest strictly (an unknown or misplaced field
// is an error) with client-go's scheme; the ServiceMonitor, whose type
// client-go does not know, as unstructured.
func decode(t *testing.T, rendered map[string]string) objects {
	t.Helper()
	strict := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	o := objects{configMaps: map[string]*corev1.ConfigMap{}, services: map[string]*corev1.Service{}}
	for _, name := range slices.Sorted(maps.Keys(rendered)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		docs := releaseutil.SplitManifests(rendered[name])
		keys := slices.Collect(maps.Keys(docs))
		sort.Sort(releaseutil.BySplitManifestsOrder(keys))
		for _, key := range keys {
			doc := docs[key]
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var head struct{ APIVersion, Kind string }
			if err := sigsyaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			if head.Kind == "ServiceMonitor" {
				u := &unstructured.Unstructured{}
				if err := sigsyaml.Unmarshal([]byte(doc), &u.Object); err != nil {
					t.Fatalf("%s: ServiceMonitor: %v", name, err)
				}
				o.monitors = append(o.monitors, u)
				continue
			}
			obj, _, err := strict.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s: decode %s %s: %v\n%s", name, head.APIVersion, head.Kind, err, doc)
			}
			switch obj := obj.(type) {
			case *appsv1.Deployment:
				if o.deployment != nil {
					t.Fatalf("%s: a second Deployment", name)
				}
				o.deployment = obj
			case *corev1.ConfigMap:
				o.configMaps[obj.Name] = obj
			case *corev1.Service:
				o.services[obj.Name] = obj
			case *policyv1.PodDisruptionBudget:
				o.pdb = obj
			case *networkingv1.NetworkPolicy:
				o.netpol = obj
			case *corev1.ServiceAccount:
				o.sa = obj
			case *rbacv1.ClusterRole:
				o.clusterRoles = append(o.clusterRoles, obj)
			case *rbacv1.ClusterRoleBinding:
				o.crBindings = append(o.crBindings, obj)
			case *rbacv1.Role:
				o.roles = append(o.roles, obj)
			case *rbacv1.RoleBinding:
				o.roleBindings = append(o.roleBindings, obj)
			default:
				t.Fatalf("%s: unexpected object %T", name, obj)
			}
			if m, ok := obj.(interface{ GetNamespace() string }); ok {
				if _, cluster := obj.(*rbacv1.ClusterRole); !cluster {
					if _, cluster := obj.(*rbacv1.ClusterRoleBinding); !cluster && m.GetNamespace() == "" {
						t.Errorf("%s: %s has no namespace", name, head.Kind)
					}
				}
			}
		}
	}
	if o.deployment == nil {
		t.Fatal("no Deployment rendered")
	}
	return o
}

// container is the gateway container of the Deployment.
func (o objects) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := o.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "gateway" {
		t.Fatalf("containers %v, want one named gateway", cs)
	}
	return cs[0]
}

// gatewayConfig is the rendered gateway.yaml, parsed.
type gatewayConfig struct {
	raw    string
	Listen map[string]string
	Gossip struct {
		Bind string
		Join []string
	}
	TLS struct {
		Source string
	}
	Discovery struct {
		Source     string
		Kubernetes struct{ Namespaces []string }
	}
	Imports []struct{ Listen, Namespace string }
}

func (o objects) gatewayConfig(t *testing.T) gatewayConfig {
	t.Helper()
	cm := o.configMaps[release+"-strait"]
	if cm == nil {
		t.Fatalf("no ConfigMap %s-strait", release)
	}
	raw, ok := cm.Data["gateway.yaml"]
	if !ok {
		t.Fatal("ConfigMap without gateway.yaml")
	}
	gc := gatewayConfig{raw: raw}
	if err := yaml.Unmarshal([]byte(raw), &gc); err != nil {
		t.Fatalf("gateway.yaml: %v\n%s", err, raw)
	}
	return gc
}

func port(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	p, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return p
}

// existing are the Secrets and ConfigMaps the value sets name and an
// operator creates before installing, by name and key.
var existing = map[string]map[string]string{
	"strait-gossip":     {"gossip-key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
	"strait-tls":        {"tls.crt": "certificate", "tls.key": "key", "ca.crt": "roots"},
	"strait-ca-bundle":  {"ca.crt": "roots"},
	"strait-acme-roots": {"ca.crt": "roots"},
	"strait-join-token": {"token": "sjt1.id.secret.hash"},
}

// TestValueSets renders every documented value set and checks what
// holds for each, then what the set is about.
func TestValueSets(t *testing.T) {
	ch := loadChart(t)
	if err := ch.Validate(); err != nil || ch.Metadata.APIVersion != chart.APIVersionV2 || ch.Metadata.AppVersion == "" || ch.Schema == nil {
		t.Fatalf("Chart.yaml: %v; apiVersion %q, appVersion %q, schema %t; want v2, an appVersion and values.schema.json",
			err, ch.Metadata.APIVersion, ch.Metadata.AppVersion, ch.Schema != nil)
	}
	examplePolicy, err := os.ReadFile("../examples/residency.yaml")
	if err != nil {
		t.Fatal(err)
	}
	existing["strait-residency"] = map[string]string{"residency.yaml": string(examplePolicy)}
	sets, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(sets) == 0 {
		t.Fatalf("no value sets in %s/ci: %v", chartDir, err)
	}
	checks := map[string]func(*testing.T, objects){
		"files-values.yaml": func(t *testing.T, o objects) {
			gc := o.gatewayConfig(t)
			if gc.TLS.Source != "files" || !strings.Contains(gc.raw, "cert: /etc/strait/tls/tls.crt") {
				t.Errorf("tls: %s", gc.raw)
			}
			checkSpread(t, o, 2, false)
			checkRBAC(t, o, nil)
			if len(o.monitors) != 0 {
				t.Error("a ServiceMonitor without serviceMonitor.enabled")
			}
			if o.deployment.Spec.Template.Spec.Containers[0].Image != "ghcr.io/straitmesh/strait:"+ch.Metadata.AppVersion {
				t.Errorf("image %s, want the appVersion as tag", o.deployment.Spec.Template.Spec.Containers[0].Image)
			}
		},
		"full-values.yaml": func(t *testing.T, o objects) {
			gc := o.gatewayConfig(t)
			if len(gc.Gossip.Join) != 2 || len(gc.Imports) != 2 {
				t.Errorf("gossip.join %v, imports %v", gc.Gossip.Join, gc.Imports)
			}
			c := o.container(t)
			otel := false
			for _, e := range c.Env {
				if e.Name == "STRAIT_ADVERTISE" {
					t.Errorf("STRAIT_ADVERTISE %q set although gateway.advertise is", e.Value)
				}
				otel = otel || e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && e.Value == "http://tempo.monitoring:4318"
			}
			if !otel {
				t.Errorf("extraEnv not in the container's environment: %+v", c.Env)
			}
			// Each imported service has a Service at its own port,
			// forwarding to its import port, named for the CoreDNS rewrite.
			for name, want := range map[string][2]any{
				release + "-strait-demo-ledger":  {int32(8080), "import-0"},
				release + "-strait-demo-profile": {int32(9090), "import-1"},
			} {
				svc := o.services[name]
				if svc == nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != want[0] || svc.Spec.Ports[0].TargetPort.String() != want[1] ||
					svc.Spec.Type != corev1.ServiceTypeClusterIP || !labelsMatch(svc.Spec.Selector, o.deployment.Spec.Template.Labels) {
					t.Errorf("Service %s of an import: %+v, want port %v to %v on the gateway's pods", name, svc, want[0], want[1])
				}
			}
			local := o.services[release+"-strait-local"]
			var names []string
			for _, p := range local.Spec.Ports {
				names = append(names, fmt.Sprintf("%s/%d", p.Name, p.Port))
			}
			if want := []string{"metrics/17020", "connect/17001", "passthrough/17002", "import-0/18080", "import-1/18081"}; !slices.Equal(names, want) {
				t.Errorf("local Service ports %v, want %v", names, want)
			}
			if _, ok := o.configMaps[release+"-strait-residency"]; !ok {
				t.Error("no ConfigMap for the inline residency policy")
			}
			checkMonitor(t, o)
		},
		"ca-values.yaml": func(t *testing.T, o objects) {
			gc := o.gatewayConfig(t)
			for _, want := range []string{"source: ca", "tokenFile: /etc/strait/join-token/token", "storage: /var/lib/strait/certificates",
				"policy: /etc/strait/residency/residency.yaml"} {
				if !strings.Contains(gc.raw, want) {
					t.Errorf("gateway.yaml lacks %q:\n%s", want, gc.raw)
				}
			}
			if _, ok := o.configMaps[release+"-strait-residency"]; ok {
				t.Error("the chart made a policy ConfigMap although an existing one is named")
			}
			vals := readValues(t, "ca-values.yaml")
			vals["replicaCount"] = 2
			rendered, err := render(ch, vals)
			if err != nil {
				t.Fatal(err)
			}
			if notes := rendered["strait/templates/NOTES.txt"]; !strings.Contains(notes, "WARNING: tls.source ca with 2 replicas") {
				t.Errorf("NOTES.txt does not warn of one join token for two replicas:\n%s", notes)
			}
		},
		"acme-values.yaml": func(t *testing.T, o objects) {
			svc := o.services[release+"-strait"]
			found := false
			for _, p := range svc.Spec.Ports {
				if p.Port == 80 && p.TargetPort.StrVal == "acme-http" {
					found = true
				}
			}
			if !found {
				t.Errorf("the LoadBalancer does not forward port 80 to the HTTP-01 listener: %v", svc.Spec.Ports)
			}
			if !strings.Contains(o.gatewayConfig(t).raw, "httpPort: 17080") {
				t.Error("gateway.yaml does not move the HTTP-01 listener above 1024")
			}
		},
		"namespaced-values.yaml": func(t *testing.T, o objects) {
			checkSpread(t, o, 3, true)
			checkRBAC(t, o, []string{"billing", "demo"})
		},
		"static-values.yaml": func(t *testing.T, o objects) {
			if len(o.clusterRoles)+len(o.roles)+len(o.crBindings)+len(o.roleBindings) != 0 {
				t.Error("RBAC rendered for static discovery")
			}
			if p := o.deployment.Spec.Template.Spec.AutomountServiceAccountToken; p == nil || *p {
				t.Error("the API token is mounted for static discovery")
			}
			gc := o.gatewayConfig(t)
			if gc.Listen["connect"] != "" || gc.Listen["passthrough"] != "" {
				t.Errorf("connect %q passthrough %q, want both off", gc.Listen["connect"], gc.Listen["passthrough"])
			}
		},
	}
	for _, path := range sets {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			rendered, err := render(ch, readValues(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if notes := rendered["strait/templates/NOTES.txt"]; !strings.Contains(notes, "strait status") {
				t.Errorf("NOTES.txt:\n%s", notes)
			}
			o := decode(t, rendered)
			checkPod(t, o)
			checkPorts(t, o)
			checkNetworkPolicy(t, o)
			checkStraitCheck(t, o)
			check, ok := checks[name]
			if !ok {
				t.Fatalf("value set %s has no checks of its own: add them here", name)
			}
			check(t, o)
		})
	}
}

// checkPod checks the pod's security and probes, and the disruption budget.
func checkPod(t *testing.T, o objects) {
	t.Helper()
	pod := o.deployment.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", psc)
	}
	c := o.container(t)
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container without securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v, want ALL dropped, none added", sc.Capabilities)
	case sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container not run as 65532")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("container seccomp profile not RuntimeDefault")
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = true
	}
	if !mounts["/var/lib/strait"] || !mounts["/tmp"] {
		t.Errorf("writable /var/lib/strait and /tmp not mounted: %v", mounts)
	}

	gc := o.gatewayConfig(t)
	probes := port(t, gc.Listen["probes"])
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s probe on %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if got := containerPort(t, c, p.probe.HTTPGet.Port.String()); got != probes {
			t.Errorf("%s probe on port %d, listen.probes is %s", p.name, got, gc.Listen["probes"])
		}
	}
	if h, _, _ := strings.Cut(gc.Listen["admin"], ":"); h != "127.0.0.1" {
		t.Errorf("listen.admin %s: the operator API must stay on loopback", gc.Listen["admin"])
	}

	if r := o.deployment.Spec.Replicas; r != nil && *r == 1 {
		if o.pdb != nil {
			t.Error("a PodDisruptionBudget of minAvailable 1 for one replica would block every node drain")
		}
	} else if o.pdb == nil || o.pdb.Spec.MinAvailable == nil || o.pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %+v, want minAvailable 1", o.pdb)
	} else if !reflect.DeepEqual(o.pdb.Spec.Selector.MatchLabels, o.deployment.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget selects %v, the Deployment %v", o.pdb.Spec.Selector.MatchLabels, o.deployment.Spec.Selector.MatchLabels)
	}
	if o.sa == nil || pod.ServiceAccountName != o.sa.Name {
		t.Errorf("pod runs as ServiceAccount %q, rendered %+v", pod.ServiceAccountName, o.sa)
	}
}

// containerPort resolves a named or numbered port of the container.
func containerPort(t *testing.T, c corev1.Container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name || strconv.Itoa(int(p.ContainerPort)) == name {
			return int(p.ContainerPort)
		}
	}
	t.Fatalf("container has no port %q", name)
	return 0
}

// checkPorts checks that no listener of gateway.yaml, container port or
// Service port is Istio's, that each listener bound beyond loopback is a
// container port, and that every Service port reaches one.
func checkPorts(t *testing.T, o objects) {
	t.Helper()
	gc := o.gatewayConfig(t)
	c := o.container(t)
	listeners := map[string]string{"gossip.bind": gc.Gossip.Bind}
	for k, v := range gc.Listen {
		listeners["listen."+k] = v
	}
	for i, im := range gc.Imports {
		listeners[fmt.Sprintf("imports.%d.listen", i)] = im.Listen
	}
	cports := map[int]bool{}
	for _, p := range c.Ports {
		cports[int(p.ContainerPort)] = true
		if slices.Contains(istioPorts, int(p.ContainerPort)) {
			t.Errorf("container port %s %d is Istio's", p.Name, p.ContainerPort)
		}
	}
	for k, addr := range listeners {
		if addr == "" {
			continue
		}
		p := port(t, addr)
		if slices.Contains(istioPorts, p) {
			t.Errorf("%s %s is an Istio port", k, addr)
		}
		if !strings.HasPrefix(addr, "127.0.0.1:") && !cports[p] {
			t.Errorf("%s %s is not a container port", k, addr)
		}
	}
	for _, svc := range o.services {
		for _, sp := range svc.Spec.Ports {
			if slices.Contains(istioPorts, int(sp.Port)) {
				t.Errorf("Service %s port %s %d is Istio's", svc.Name, sp.Name, sp.Port)
			}
			found := false
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.String() && cp.Protocol == sp.Protocol {
					found = true
				}
			}
			if !found {
				t.Errorf("Service %s port %s targets %s/%s, which the container lacks", svc.Name, sp.Name, sp.TargetPort.String(), sp.Protocol)
			}
		}
		if !reflect.DeepEqual(svc.Spec.Selector, o.deployment.Spec.Selector.MatchLabels) {
			t.Errorf("Service %s selects %v, the Deployment %v", svc.Name, svc.Spec.Selector, o.deployment.Spec.Selector.MatchLabels)
		}
	}
	lb := o.services[release+"-strait"]
	if lb == nil || lb.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Fatalf("no LoadBalancer Service %s-strait: %+v", release, lb)
	}
	if !lb.Spec.PublishNotReadyAddresses {
		t.Error("the LoadBalancer leaves out gateways that are still joining: two clusters joining each other would wait forever")
	}
	var lbPorts []string
	for _, p := range lb.Spec.Ports {
		lbPorts = append(lbPorts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	gossip := port(t, gc.Gossip.Bind)
	for _, want := range []string{fmt.Sprintf("%d/TCP", port(t, gc.Listen["data"])), fmt.Sprintf("%d/TCP", gossip), fmt.Sprintf("%d/UDP", gossip)} {
		if !slices.Contains(lbPorts, want) {
			t.Errorf("LoadBalancer ports %v lack %s", lbPorts, want)
		}
	}
}

// checkNetworkPolicy checks that the gateway pods' ingress lets anyone
// reach the data, gossip and probes ports, the cluster's pods reach the
// ports for local workloads, and only pods of an import's namespace reach
// an import port that names one; every container port is in one rule.
func checkNetworkPolicy(t *testing.T, o objects) {
	t.Helper()
	np := o.netpol
	if np == nil {
		t.Fatal("no NetworkPolicy")
	}
	if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, o.deployment.Spec.Selector.MatchLabels) {
		t.Errorf("NetworkPolicy selects %v, the Deployment %v", np.Spec.PodSelector.MatchLabels, o.deployment.Spec.Selector.MatchLabels)
	}
	const anywhere, anyPod = "anywhere", "any pod"
	from := map[string][]string{} // port/protocol: who may reach it
	for _, r := range np.Spec.Ingress {
		who := anywhere
		if len(r.From) > 0 {
			if len(r.From) != 1 || r.From[0].NamespaceSelector == nil || r.From[0].IPBlock != nil || r.From[0].PodSelector != nil {
				t.Errorf("ingress from %+v, want a namespace selector", r.From)
				continue
			}
			who = anyPod
			if ns, ok := r.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; ok {
				who = "namespace " + ns
			}
		}
		for _, p := range r.Ports {
			key := fmt.Sprintf("%s/%s", p.Port.String(), *p.Protocol)
			from[key] = append(from[key], who)
		}
	}
	want := map[string]string{}
	c := o.container(t)
	for _, p := range c.Ports {
		key := fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
		want[key] = anywhere
		if p.Name == "connect" || p.Name == "passthrough" || strings.HasPrefix(p.Name, "import-") {
			want[key] = anyPod
		}
	}
	gc := o.gatewayConfig(t)
	for _, im := range gc.Imports {
		if im.Namespace != "" {
			want[fmt.Sprintf("%d/TCP", port(t, im.Listen))] = "namespace " + im.Namespace
		}
	}
	for key, who := range want {
		if got := from[key]; !slices.Equal(got, []string{who}) {
			t.Errorf("port %s reachable from %v, want %s", key, got, who)
		}
	}
}

// checkSpread checks replicas and anti-affinity.
func checkSpread(t *testing.T, o objects, replicas int32, required bool) {
	t.Helper()
	if r := o.deployment.Spec.Replicas; r == nil || *r != replicas {
		t.Errorf("replicas %v, want %d", r, replicas)
	}
	aff := o.deployment.Spec.Template.Spec.Affinity
	if aff == nil || aff.PodAntiAffinity == nil {
		t.Fatal("no pod anti-affinity")
	}
	var term corev1.PodAffinityTerm
	pa := aff.PodAntiAffinity
	if required {
		if len(pa.RequiredDuringSchedulingIgnoredDuringExecution) != 1 || len(pa.PreferredDuringSchedulingIgnoredDuringExecution) != 0 {
			t.Fatalf("anti-affinity %+v, want one required term", pa)
		}
		term = pa.RequiredDuringSchedulingIgnoredDuringExecution[0]
	} else {
		if len(pa.PreferredDuringSchedulingIgnoredDuringExecution) != 1 || len(pa.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
			t.Fatalf("anti-affinity %+v, want one preferred term", pa)
		}
		term = pa.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	}
	if term.TopologyKey != "kubernetes.io/hostname" || term.LabelSelector == nil ||
		!reflect.DeepEqual(term.LabelSelector.MatchLabels, o.deployment.Spec.Selector.MatchLabels) {
		t.Errorf("anti-affinity term %+v, want the gateway's pods kept off each other's nodes", term)
	}
}

// documentedRole reads the ClusterRole docs/kubernetes.md gives the
// gateway.
func documentedRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	return kubetest.DocumentedRole(t, "../../docs/kubernetes.md")
}

// flatten lists group|resource|verb of rules.
func flatten(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+"|"+res+"|"+v)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkRBAC checks that the rendered roles grant exactly the rules of
// docs/kubernetes.md and what discovery checks at start
// (kube.Permissions), cluster-wide or in each namespace, bound to the
// pod's ServiceAccount.
func checkRBAC(t *testing.T, o objects, namespaces []string) {
	t.Helper()
	doc := documentedRole(t)
	var perms []string
	for _, p := range kube.Permissions() {
		res := p.Resource
		if p.Subresource != "" {
			res += "/" + p.Subresource
		}
		perms = append(perms, p.Group+"|"+res+"|"+p.Verb)
	}
	slices.Sort(perms)
	if !slices.Equal(flatten(doc.Rules), perms) {
		t.Fatalf("docs/kubernetes.md grants %v; discovery checks %v", flatten(doc.Rules), perms)
	}
	type grant struct {
		ns    string
		rules []rbacv1.PolicyRule
	}
	var grants []grant
	var bound []string
	sa := o.deployment.Spec.Template.Spec.ServiceAccountName
	subjectOK := func(s []rbacv1.Subject) bool {
		return len(s) == 1 && s[0].Kind == "ServiceAccount" && s[0].Name == sa && s[0].Namespace == namespace
	}
	if namespaces == nil {
		if len(o.roles)+len(o.roleBindings) != 0 || len(o.clusterRoles) != 1 || len(o.crBindings) != 1 {
			t.Fatalf("%d Roles, %d RoleBindings, %d ClusterRoles, %d ClusterRoleBindings; want one ClusterRole and its binding",
				len(o.roles), len(o.roleBindings), len(o.clusterRoles), len(o.crBindings))
		}
		grants = append(grants, grant{"", o.clusterRoles[0].Rules})
		b := o.crBindings[0]
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != o.clusterRoles[0].Name || !subjectOK(b.Subjects) {
			t.Errorf("ClusterRoleBinding %+v does not bind %s to the pod's ServiceAccount", b, o.clusterRoles[0].Name)
		}
	} else {
		if len(o.clusterRoles)+len(o.crBindings) != 0 || len(o.roles) != len(namespaces) || len(o.roleBindings) != len(namespaces) {
			t.Fatalf("%d Roles, %d RoleBindings, %d ClusterRoles; want a Role and a RoleBinding in each of %v",
				len(o.roles), len(o.roleBindings), len(o.clusterRoles), namespaces)
		}
		for i, r := range o.roles {
			grants = append(grants, grant{r.Namespace, r.Rules})
			b := o.roleBindings[i]
			if b.Namespace != r.Namespace || b.RoleRef.Kind != "Role" || b.RoleRef.Name != r.Name || !subjectOK(b.Subjects) {
				t.Errorf("RoleBinding %+v does not bind Role %s/%s to the pod's ServiceAccount", b, r.Namespace, r.Name)
			}
			bound = append(bound, r.Namespace)
		}
		if !slices.Equal(bound, namespaces) {
			t.Errorf("Roles in %v, want %v", bound, namespaces)
		}
	}
	for _, g := range grants {
		if !reflect.DeepEqual(g.rules, doc.Rules) {
			t.Errorf("rules in %q:\n%v\nwant docs/kubernetes.md's:\n%v", g.ns, g.rules, doc.Rules)
		}
	}
}

// checkMonitor checks the ServiceMonitor scrapes /metrics on the local
// Service's metrics port, which is the probes listener.
func checkMonitor(t *testing.T, o objects) {
	t.Helper()
	if len(o.monitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(o.monitors))
	}
	m := o.monitors[0]
	if m.GetAPIVersion() != "monitoring.coreos.com/v1" || m.GetKind() != "ServiceMonitor" {
		t.Errorf("ServiceMonitor is %s %s", m.GetAPIVersion(), m.GetKind())
	}
	if m.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", m.GetLabels())
	}
	eps, _, _ := unstructured.NestedSlice(m.Object, "spec", "endpoints")
	if len(eps) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", eps)
	}
	ep := eps[0].(map[string]any)
	if ep["path"] != "/metrics" || ep["port"] != "metrics" {
		t.Errorf("ServiceMonitor endpoint %v, want /metrics on port metrics", ep)
	}
	sel, _, _ := unstructured.NestedStringMap(m.Object, "spec", "selector", "matchLabels")
	var selected []*corev1.Service
	for _, svc := range o.services {
		if labelsMatch(sel, svc.Labels) {
			selected = append(selected, svc)
		}
	}
	if len(selected) != 1 {
		t.Fatalf("ServiceMonitor selector %v matches %d Services, want 1", sel, len(selected))
	}
	probes := port(t, o.gatewayConfig(t).Listen["probes"])
	for _, p := range selected[0].Spec.Ports {
		if p.Name == "metrics" && int(p.Port) == probes && containerPort(t, o.container(t), p.TargetPort.String()) == probes {
			return
		}
	}
	t.Errorf("Service %s has no metrics port reaching listen.probes (%d)", selected[0].Name, probes)
}

func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// straitBinary builds cmd/strait once for the package's tests.
func straitBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "strait-helm-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "strait")
		goBin, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("build strait: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", binPath, "github.com/straitmesh/strait/cmd/strait")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build cmd/strait: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// podFiles lays out the gateway container's view in a directory: each
// volume mounted where the pod mounts it (the chart's ConfigMaps, and the
// existing Secrets and ConfigMaps), and returns the root and the
// container's environment as the kubelet resolves it.
func podFiles(t *testing.T, o objects) (root string, env []string) {
	t.Helper()
	root = t.TempDir()
	pod := o.deployment.Spec.Template.Spec
	c := o.container(t)
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	lookup := func(name string) map[string]string {
		if cm, ok := o.configMaps[name]; ok {
			return cm.Data
		}
		if data, ok := existing[name]; ok {
			return data
		}
		t.Fatalf("volume source %q: neither rendered nor among the existing objects", name)
		return nil
	}
	for _, m := range c.VolumeMounts {
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("volume mount %s has no volume", m.Name)
		}
		var data map[string]string
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			data, items = lookup(v.ConfigMap.Name), v.ConfigMap.Items
		case v.Secret != nil:
			data, items = lookup(v.Secret.SecretName), v.Secret.Items
		case v.EmptyDir != nil:
			continue
		default:
			t.Fatalf("volume %s of an unexpected kind", v.Name)
		}
		files := map[string]string{}
		if items == nil {
			maps.Copy(files, data)
		}
		for _, it := range items {
			d, ok := data[it.Key]
			if !ok {
				t.Fatalf("volume %s: no key %s", v.Name, it.Key)
			}
			files[it.Path] = d
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	vals := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vals[e.Name] = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := vals[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			vals[e.Name] = podIP
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := lookup(ref.Name)[ref.Key]
			if !ok {
				t.Fatalf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			vals[e.Name] = v
		default:
			t.Fatalf("env %s: unexpected source %+v", e.Name, e.ValueFrom)
		}
		env = append(env, e.Name+"="+vals[e.Name])
	}
	return root, env
}

// straitCheck runs `strait gateway --config gateway.yaml --check` as the
// container would: with the pod's files under root (the config's
// absolute paths moved there) and the given environment only.
func straitCheck(t *testing.T, o objects, root string, env []string) (string, error) {
	t.Helper()
	c := o.container(t)
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) || c.Args[0] != "gateway" {
		t.Fatalf("container args %v, want gateway --config FILE", c.Args)
	}
	cfgPath := filepath.Join(root, c.Args[i+1])
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatalf("the config file the container is given: %v", err)
	}
	for _, m := range c.VolumeMounts {
		raw = bytes.ReplaceAll(raw, []byte(" "+m.MountPath+"/"), []byte(" "+filepath.Join(root, m.MountPath)+"/"))
	}
	local := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(local, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, straitBinary(t), "gateway", "--config", local, "--check")
	cmd.Env = append([]string{"HOME=" + root, "PATH=/usr/bin:/bin"}, env...)
	cmd.Dir = filepath.Join(root, "var/lib/strait")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// checkStraitCheck: the rendered config passes the gateway's own check as
// the pod gets it, and fails without the pod's environment (the check is
// not vacuous: gossip.key comes only from there).
func checkStraitCheck(t *testing.T, o objects) {
	t.Helper()
	root, env := podFiles(t, o)
	if out, err := straitCheck(t, o, root, env); err != nil || !strings.Contains(out, "valid") {
		t.Errorf("strait gateway --check of the rendered gateway.yaml: %v\n%s\n%s", err, out, o.gatewayConfig(t).raw)
	}
	var ee *exec.ExitError
	if out, err := straitCheck(t, o, root, nil); !errors.As(err, &ee) || !strings.Contains(out, "gossip.key") {
		t.Errorf("strait gateway --check without the pod's environment: %v, want a failure naming gossip.key\n%s", err, out)
	}
}

// TestSchemaRefuses renders values the schema must refuse, each with the
// text of the refusal.
func TestSchemaRefuses(t *testing.T) {
	ch := loadChart(t)
	base := func() map[string]any { return readValues(t, "files-values.yaml") }
	set := func(path string, v any) func(map[string]any) {
		return func(m map[string]any) {
			keys := strings.Split(path, ".")
			for _, k := range keys[:len(keys)-1] {
				next, ok := m[k].(map[string]any)
				if !ok {
					next = map[string]any{}
					m[k] = next
				}
				m = next
			}
			m[keys[len(keys)-1]] = v
		}
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want []string // in the error, all of them
	}{
		{"missing cluster", set("gateway.cluster", ""), []string{"/gateway/cluster", "does not match pattern"}},
		{"missing region", func(m map[string]any) { delete(m["gateway"].(map[string]any), "region") }, []string{"/gateway/region", "does not match pattern"}},
		{"cluster not a DNS label", set("gateway.cluster", "EU_West"), []string{"/gateway/cluster", "does not match pattern"}},
		{"no replicas", set("replicaCount", 0), []string{"/replicaCount", "minimum: got 0, want 1"}},
		{"port out of range", set("ports.data", 70000), []string{"/ports/data", "maximum: got 70,000, want 65,535"}},
		{"privileged port", set("ports.gossip", 443), []string{"/ports/gossip", "minimum: got 443, want 1,024"}},
		{"Istio sidecar port", set("ports.probes", 15020), []string{"/ports/probes", "'not' failed"}},
		{"Istio gateway port", set("ports.data", 15443), []string{"/ports/data", "'not' failed"}},
		{"port not a number", set("ports.data", "17443"), []string{"/ports/data", "got string, want integer"}},
		{"unknown certificate source", set("tls.source", "vault"), []string{"/tls/source", "value must be one of 'files', 'ca', 'acme'"}},
		{"files without a Secret", set("tls.secretName", ""), []string{"/tls/secretName", "minLength: got 0, want 1"}},
		{"ca without a join token", func(m map[string]any) {
			set("tls.source", "ca")(m)
			set("tls.authority.servers", []any{"voter-1:17012"})(m)
		}, []string{"/tls/authority/joinTokenSecret/name", "minLength: got 0, want 1"}},
		{"ca without servers", func(m map[string]any) {
			set("tls.source", "ca")(m)
			set("tls.authority.joinTokenSecret", map[string]any{"name": "join", "key": "token"})(m)
		}, []string{"/tls/authority/servers", "minItems: got 0, want 1"}},
		{"acme without accepting the terms", func(m map[string]any) {
			set("tls.source", "acme")(m)
			set("tls.acme.directory", "https://ca.example/directory")(m)
			set("tls.acme.dnsSuffix", "gw.example")(m)
		}, []string{"/tls/acme/agreeToTerms", "value must be true"}},
		{"acme directory over http", func(m map[string]any) {
			set("tls.source", "acme")(m)
			set("tls.acme.directory", "http://ca.example/directory")(m)
			set("tls.acme.dnsSuffix", "gw.example")(m)
			set("tls.acme.agreeToTerms", true)(m)
		}, []string{"/tls/acme/directory", "does not match pattern '^https://'"}},
		{"no gossip key", set("gossip.keySecret.name", ""), []string{"/gossip/keySecret/name", "minLength: got 0, want 1"}},
		{"bad join address", set("gossip.join", []any{"gw.example"}), []string{"/gossip/join/0", "does not match pattern"}},
		{"unknown discovery source", set("discovery.source", "consul"), []string{"/discovery/source", "value must be one of 'kubernetes', 'static'"}},
		{"import on an Istio port", set("imports", []any{map[string]any{"service": "demo/ledger", "port": 8080, "listenPort": 15001}}),
			[]string{"/imports/0/listenPort", "'not' failed"}},
		{"import without a namespace", set("imports", []any{map[string]any{"service": "ledger", "port": 8080, "listenPort": 18080}}),
			[]string{"/imports/0/service", "does not match pattern"}},
		{"policy both inline and existing", func(m map[string]any) {
			set("residency.policy", "kind: ResidencyPolicy")(m)
			set("residency.existingConfigMap", "eu-policy")(m)
		}, []string{"/residency", "'not' failed"}},
		{"bad anti-affinity mode", set("antiAffinity.mode", "always"), []string{"/antiAffinity/mode", "value must be one of 'preferred', 'required'"}},
		{"misspelled key", set("replicas", 3), []string{"additional properties 'replicas' not allowed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := base()
			tc.edit(vals)
			_, err := render(ch, vals)
			if err == nil {
				t.Fatal("rendered; want the schema to refuse the values")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	// The defaults alone lack what only the operator knows.
	_, err := render(ch, nil)
	if err == nil {
		t.Fatal("the chart rendered with no values; want cluster, region, gossip key and certificate Secret required")
	}
	for _, w := range []string{"/gateway/cluster", "/gateway/region", "/gossip/keySecret/name", "/tls/secretName"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("render without values: error does not name %s:\n%v", w, err)
		}
	}
}

// TestRBACVerbsCommented: every verb the chart grants carries a comment
// saying what it is for.
func TestRBACVerbsCommented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(data), `define "strait.rbacRules"`)
	if !ok {
		t.Fatal("no strait.rbacRules in _helpers.tpl")
	}
	body, _, _ = strings.Cut(body, "{{- end }}")
	verb := regexp.MustCompile(`^\s+- (get|list|watch|create|update|patch|delete|deletecollection)\b(.*)$`)
	n := 0
	for _, line := range strings.Split(body, "\n") {
		m := verb.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		if c := strings.TrimSpace(m[2]); !strings.HasPrefix(c, "#") || len(c) < 10 {
			t.Errorf("verb %s without a comment: %q", m[1], line)
		}
	}
	if n != len(kube.Permissions()) {
		t.Errorf("%d verbs in strait.rbacRules, discovery checks %d", n, len(kube.Permissions()))
	}
}

// TestMulticloudValues renders the values of each Kubernetes cluster of
// the multi-cloud example (deploy/examples/multicloud, docs/multicloud.md)
// with the example's policy, and holds them to what every value set
// holds to: the pod, the ports, the network policy and the gateway's own
// --check of the rendered config, plus the identity each file names.
func TestMulticloudValues(t *testing.T) {
	ch := loadChart(t)
	dir := filepath.Join("..", "examples", "multicloud")
	policy, err := os.ReadFile(filepath.Join(dir, "residency.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	old := existing["strait-residency"]
	existing["strait-residency"] = map[string]string{"residency.yaml": string(policy)}
	t.Cleanup(func() { existing["strait-residency"] = old })
	want := map[string][3]string{ // cluster, region, cloud
		"aws-eu-west-values.yaml":    {"aws-eu-west-1", "eu-west", "aws"},
		"gcp-eu-central-values.yaml": {"gcp-eu-central-1", "eu-central", "gcp"},
		"aws-us-east-values.yaml":    {"aws-us-east-1", "us-east", "aws"},
	}
	sets, err := filepath.Glob(filepath.Join(dir, "*-values.yaml"))
	if err != nil || len(sets) != len(want) {
		t.Fatalf("value files %v (%v), want the %d of the example", sets, err, len(want))
	}
	for _, path := range sets {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			vals, err := chartutil.ReadValuesFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rendered, err := render(ch, vals)
			if err != nil {
				t.Fatal(err)
			}
			o := decode(t, rendered)
			checkPod(t, o)
			checkPorts(t, o)
			checkNetworkPolicy(t, o)
			checkStraitCheck(t, o)
			w, ok := want[name]
			if !ok {
				t.Fatalf("%s is not one of the example's clusters", name)
			}
			raw := o.gatewayConfig(t).raw
			for i, key := range []string{"cluster", "region", "cloud"} {
				if !strings.Contains(raw, key+": \""+w[i]+"\"") {
					t.Errorf("gateway.yaml lacks %s: %s\n%s", key, w[i], raw)
				}
			}
			// The example is drilled: fault mode on (federation.yaml).
			if !strings.Contains(raw, "faults:\n  enabled: true\n  maxLease: 5m\n") {
				t.Errorf("gateway.yaml lacks fault mode:\n%s", raw)
			}
		})
	}
}

// TestImportNames: NOTES.txt prints the CoreDNS rewrite that maps
// clusterset.local names to the imports' Services, naming this release's
// Services and namespace, and a release whose Service names would be too
// long fails to render, naming the import, instead of cutting the names
// short (the rewrite could not follow them).
func TestImportNames(t *testing.T) {
	ch := loadChart(t)
	rendered, err := render(ch, readValues(t, "full-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	notes := rendered["strait/templates/NOTES.txt"]
	for _, want := range []string{
		`name regex (.+)\.(.+)\.svc\.clusterset\.local\.$ ` + release + `-strait-{2}-{1}.` + namespace + `.svc.cluster.local.`,
		"answer auto",
		"ledger.demo.svc.clusterset.local:8080",
		"profile.demo.svc.clusterset.local:9090",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
	vals := readValues(t, "full-values.yaml")
	vals["imports"] = []any{map[string]any{"service": "demo/" + strings.Repeat("x", 60), "port": 8080, "listenPort": 18080}}
	if _, err := render(ch, vals); err == nil || !strings.Contains(err.Error(), "longer than 63 characters") {
		t.Errorf("an import whose Service name is too long: %v, want a failure saying so", err)
	}
	vals["importServices"] = map[string]any{"enabled": false}
	out, err := render(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	if o := decode(t, out); len(o.services) != 2 {
		t.Errorf("importServices off: Services %v, want the gateway's two", o.services)
	}
}
