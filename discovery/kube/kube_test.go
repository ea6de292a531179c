package kube

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/internal/kubetest"
	"github.com/straitmesh/strait/internal/metricstest"
)

// follow is how soon a change in the API must show in Services.
const follow = time.Second

// cluster is a real API server with the MCS CRDs and admin clients.
type cluster struct {
	*kubetest.Server
	core kubernetes.Interface
	mcs  mcsclient.Interface
}

func startCluster(t *testing.T, users ...string) *cluster {
	t.Helper()
	s := kubetest.Start(t, kubetest.Options{Users: users})
	s.InstallMCS(t)
	rc := s.Config(kubetest.Admin)
	return &cluster{Server: s, core: kubernetes.NewForConfigOrDie(rc), mcs: mcsclient.NewForConfigOrDie(rc)}
}

func (c *cluster) namespace(t *testing.T, name string) {
	t.Helper()
	if _, err := c.core.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects a source's logs for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type running struct {
	*Source
	reg  *prometheus.Registry
	logs *logBuffer
}

func startSource(t *testing.T, rc *rest.Config, cfg Config) *running {
	t.Helper()
	r := &running{reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	if cfg.SyncTimeout == 0 {
		cfg.SyncTimeout = 20 * time.Second
	}
	r.Source, err = New(cfg, Options{RestConfig: rc, Logger: log, Registry: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		if t.Failed() {
			t.Logf("discovery log:\n%s", r.logs.String())
		}
	})
	if err := r.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return r
}

// eventually polls cond every 10ms until it holds or within passes, and
// returns how long it took.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func (r *running) service(key string) (discovery.Service, bool) {
	for _, s := range r.Services() {
		if s.Key() == key {
			return s, true
		}
	}
	return discovery.Service{}, false
}

func (r *running) endpoints(key string) []string {
	s, ok := r.service(key)
	if !ok {
		return nil
	}
	return s.Endpoints
}

func apiService(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: ports}}
}

func apiSlice(ns, svc string, port int32, addrs ...string) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-1",
		Labels: map[string]string{serviceNameLabel: svc}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}}}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, Zone: ptr.To("zone-a")})
	}
	return sl
}

func apiExport(ns, name, labels string) *mcsv1a1.ServiceExport {
	se := &mcsv1a1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if labels != "" {
		se.Annotations = map[string]string{LabelsAnnotation: labels}
	}
	return se
}

func webPort(app string) corev1.ServicePort {
	p := corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")}
	if app != "" {
		p.AppProtocol = &app
	}
	return p
}

// TestServicesFollowTheAPI: a Service is exported once a ServiceExport
// names it, and its endpoints follow scaling, readiness and deletion,
// each change in Services within a second of the API write.
func TestServicesFollowTheAPI(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.namespace(t, "demo")
	c.namespace(t, "other")
	r := startSource(t, c.Config(kubetest.Admin), Config{})
	if n := len(r.Services()); n != 0 {
		t.Fatalf("start: %d services, want none", n)
	}

	// A Service and its endpoints without an export are not exported.
	if _, err := c.core.CoreV1().Services("demo").Create(ctx, apiService("demo", "ledger", webPort("http")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.core.DiscoveryV1().EndpointSlices("demo").Create(ctx, apiSlice("demo", "ledger", 8080, "10.1.0.1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.core.CoreV1().Services("other").Create(ctx, apiService("other", "quiet", webPort("")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Export: the service appears, with ports, protocol, target, zone and labels.
	if _, err := c.mcs.MulticlusterV1alpha1().ServiceExports("demo").Create(ctx, apiExport("demo", "ledger", "data-class=pii-eu"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, follow, "exported service listed", func() bool { _, ok := r.service("demo/ledger"); return ok })
	t.Logf("export seen in %s", took)
	got, _ := r.service("demo/ledger")
	want := discovery.Service{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"},
		Ports:     []discovery.Port{{Name: "web", Port: 80, TargetPort: 8080, Protocol: "http"}},
		Endpoints: []string{"10.1.0.1"}, Zones: map[string]string{"10.1.0.1": "zone-a"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("exported:\n got %+v\nwant %+v", got, want)
	}
	if len(r.Services()) != 1 {
		t.Errorf("services %v: only demo/ledger is exported", r.Services())
	}
	select {
	case <-r.Changes():
	default:
		t.Error("no change signalled")
	}

	// Scale up.
	sl, err := c.core.DiscoveryV1().EndpointSlices("demo").Get(ctx, "ledger-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.1.0.2", "10.1.0.3"} {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	if sl, err = c.core.DiscoveryV1().EndpointSlices("demo").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, follow, "scaled to 3", func() bool {
		return reflect.DeepEqual(r.endpoints("demo/ledger"), []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"})
	})
	t.Logf("scale-up seen in %s", took)

	// Two turn unready, one of them terminating but still serving.
	sl.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false)}
	sl.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	if sl, err = c.core.DiscoveryV1().EndpointSlices("demo").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, follow, "unready endpoints dropped", func() bool { return reflect.DeepEqual(r.endpoints("demo/ledger"), []string{"10.1.0.3"}) })
	t.Logf("unready seen in %s", took)

	// The last ready one goes too: the serving terminating one drains.
	sl.Endpoints[2].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false)}
	if _, err = c.core.DiscoveryV1().EndpointSlices("demo").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, follow, "terminating serving endpoint used when none is ready", func() bool {
		return reflect.DeepEqual(r.endpoints("demo/ledger"), []string{"10.1.0.2"})
	})

	// Scale to zero: exported with no endpoints.
	if err := c.core.DiscoveryV1().EndpointSlices("demo").Delete(ctx, "ledger-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, follow, "no endpoints", func() bool { s, ok := r.service("demo/ledger"); return ok && len(s.Endpoints) == 0 })

	// Service deleted: the export stays but exports nothing.
	if err := c.core.CoreV1().Services("demo").Delete(ctx, "ledger", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, follow, "deleted service gone", func() bool { return len(r.Services()) == 0 })
	t.Logf("delete seen in %s", took)

	// Back, then the export is deleted.
	if _, err := c.core.CoreV1().Services("demo").Create(ctx, apiService("demo", "ledger", webPort("")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, follow, "service back", func() bool { _, ok := r.service("demo/ledger"); return ok })
	if err := c.mcs.MulticlusterV1alpha1().ServiceExports("demo").Delete(ctx, "ledger", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, follow, "unexported service gone", func() bool { return len(r.Services()) == 0 })
	if got := metricstest.Sum(t, r.reg, "strait_discovery_kube_updates_total", nil); got < 7 {
		t.Errorf("strait_discovery_kube_updates_total = %v, want a change counted for each step", got)
	}
}

// exportCondition returns the condition of type typ on the export, or nil.
func (c *cluster) exportCondition(t *testing.T, ns, name, typ string) *metav1.Condition {
	t.Helper()
	se, err := c.mcs.MulticlusterV1alpha1().ServiceExports(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return meta.FindStatusCondition(se.Status.Conditions, typ)
}

func (c *cluster) waitCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var last *metav1.Condition
	eventually(t, 10*time.Second, fmt.Sprintf("%s/%s %s=%s (%s)", ns, name, typ, status, reason), func() bool {
		last = c.exportCondition(t, ns, name, typ)
		return last != nil && last.Status == status && last.Reason == reason
	})
	return last
}

// TestExportConditions: each ServiceExport carries Valid (and Conflict
// when valid) as the MCS API specifies, and bad input is a condition, a
// log line and a metric.
func TestExportConditions(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.namespace(t, "demo")
	r := startSource(t, c.Config(kubetest.Admin), Config{})
	create := func(se *mcsv1a1.ServiceExport, svc *corev1.Service) {
		t.Helper()
		if svc != nil {
			if _, err := c.core.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.mcs.MulticlusterV1alpha1().ServiceExports(se.Namespace).Create(ctx, se, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	problems := func(reason string) float64 {
		return metricstest.Sum(t, r.reg, "strait_discovery_kube_export_problems", map[string]string{"reason": reason})
	}

	// An export of a missing Service: Valid=False NoService, until it exists.
	create(apiExport("demo", "ghost", ""), nil)
	cond := c.waitCondition(t, "demo", "ghost", "Valid", metav1.ConditionFalse, "NoService")
	if !strings.Contains(cond.Message, "demo/ghost does not exist") {
		t.Errorf("NoService message %q", cond.Message)
	}
	if c.exportCondition(t, "demo", "ghost", "Conflict") != nil {
		t.Error("an invalid export carries a Conflict condition")
	}
	if problems("NoService") != 1 {
		t.Errorf("export problems NoService = %v, want 1", problems("NoService"))
	}
	if _, err := c.core.CoreV1().Services("demo").Create(ctx, apiService("demo", "ghost", webPort("")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitCondition(t, "demo", "ghost", "Valid", metav1.ConditionTrue, "Valid")
	c.waitCondition(t, "demo", "ghost", "Conflict", metav1.ConditionFalse, "NoConflicts")
	eventually(t, follow, "problem gone from the metric", func() bool { return problems("NoService") == 0 })

	// ExternalName cannot be exported.
	ext := apiService("demo", "outside", webPort(""))
	ext.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.org"}
	create(apiExport("demo", "outside", ""), ext)
	c.waitCondition(t, "demo", "outside", "Valid", metav1.ConditionFalse, "InvalidServiceType")

	// Thousands of ports: refused with a condition and a metric.
	huge := apiService("demo", "huge")
	for i := range 2000 {
		huge.Spec.Ports = append(huge.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(10000 + i), Protocol: corev1.ProtocolTCP})
	}
	create(apiExport("demo", "huge", ""), huge)
	cond = c.waitCondition(t, "demo", "huge", "Valid", metav1.ConditionFalse, ReasonTooManyPorts)
	if !strings.Contains(cond.Message, "2000 TCP ports") {
		t.Errorf("TooManyPorts message %q", cond.Message)
	}
	if problems(ReasonTooManyPorts) != 1 {
		t.Errorf("export problems TooManyPorts = %v, want 1", problems(ReasonTooManyPorts))
	}

	// Unreadable residency labels: not exported at all.
	create(apiExport("demo", "labelled", "data-class"), apiService("demo", "labelled", webPort("")))
	c.waitCondition(t, "demo", "labelled", "Valid", metav1.ConditionFalse, ReasonInvalidLabels)

	// No selector: exported, and said so.
	bare := apiService("demo", "bare", webPort(""))
	bare.Spec.Selector = nil
	create(apiExport("demo", "bare", ""), bare)
	cond = c.waitCondition(t, "demo", "bare", "Valid", metav1.ConditionTrue, "Valid")
	if !strings.Contains(cond.Message, "no selector") {
		t.Errorf("no-selector message %q", cond.Message)
	}
	eventually(t, follow, "NoSelector counted", func() bool { return problems(problemNoSelector) == 1 })

	keys := []string{}
	for _, s := range r.Services() {
		keys = append(keys, s.Key())
	}
	if want := []string{"demo/bare", "demo/ghost"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("exported %v, want only the valid %v", keys, want)
	}
	for _, line := range []string{`msg="service export refused" service=demo/huge reason=TooManyPorts`,
		`msg="service export refused" service=demo/labelled reason=InvalidLabels`,
		`msg="service export problem resolved" service=demo/ghost was=NoService`} {
		if !strings.Contains(r.logs.String(), line) {
			t.Errorf("log lacks %s", line)
		}
	}

	// Another cluster declares ghost's port as grpc: Conflict=True,
	// PortConflict, naming the cluster; agreement clears it.
	r.ObservePorts(map[string][]discovery.ClusterPorts{"demo/ghost": {
		{Cluster: "eu-central-1", Ports: []discovery.Port{{Name: "web", Port: 80, Protocol: "grpc"}}}}})
	cond = c.waitCondition(t, "demo", "ghost", "Conflict", metav1.ConditionTrue, "PortConflict")
	if !strings.Contains(cond.Message, "eu-central-1 declares [80/grpc(web)]") || !strings.Contains(cond.Message, "[80/tcp(web)]") {
		t.Errorf("PortConflict message %q does not name the cluster and both declarations", cond.Message)
	}
	if problems("PortConflict") != 1 {
		t.Errorf("export problems PortConflict = %v, want 1", problems("PortConflict"))
	}
	if _, ok := r.service("demo/ghost"); !ok {
		t.Error("a conflicting export is no longer exported; it should be, on its own ports")
	}
	r.ObservePorts(map[string][]discovery.ClusterPorts{"demo/ghost": {
		{Cluster: "eu-central-1", Ports: []discovery.Port{{Name: "web", Port: 80, Protocol: "tcp"}}}}})
	cond = c.waitCondition(t, "demo", "ghost", "Conflict", metav1.ConditionFalse, "NoConflicts")
	if !strings.Contains(cond.Message, "agree with the 1 other") {
		t.Errorf("NoConflicts message %q", cond.Message)
	}
	if got := metricstest.Sum(t, r.reg, "strait_discovery_kube_writes_total", map[string]string{"resource": "serviceexports/status", "result": "ok"}); got < 7 {
		t.Errorf("status writes ok = %v, want one per condition change", got)
	}
}

// TestServiceImports: the gateway keeps one owned ServiceImport per
// imported service and deletes it when the import goes; it puts back
// what someone changes and never touches another owner's.
func TestServiceImports(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.namespace(t, "demo")
	c.namespace(t, "shop")
	r := startSource(t, c.Config(kubetest.Admin), Config{})
	imports := c.mcs.MulticlusterV1alpha1().ServiceImports
	get := func(ns, name string) (*mcsv1a1.ServiceImport, error) {
		return imports(ns).Get(ctx, name, metav1.GetOptions{})
	}

	// Another owner's ServiceImport, for a service we import too.
	theirs := &mcsv1a1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", Labels: map[string]string{ManagedByLabel: "someone-else"}},
		Spec: mcsv1a1.ServiceImportSpec{Type: mcsv1a1.Headless, Ports: []mcsv1a1.ServicePort{{Port: 1}}}}
	if _, err := imports("shop").Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r.SetImports([]Import{
		{Namespace: "demo", Name: "ledger", Ports: []ImportPort{{Port: 9000, Protocol: "grpc"}, {Port: 80, Protocol: "http"}}},
		{Namespace: "shop", Name: "cart", Ports: []ImportPort{{Port: 80}}},
	})
	var si *mcsv1a1.ServiceImport
	eventually(t, 10*time.Second, "ServiceImport demo/ledger written", func() bool {
		var err error
		si, err = get("demo", "ledger")
		return err == nil
	})
	want := []mcsv1a1.ServicePort{
		{Name: "http-80", Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("http"), Port: 80},
		{Name: "grpc-9000", Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("grpc"), Port: 9000},
	}
	if si.Spec.Type != mcsv1a1.ClusterSetIP || !reflect.DeepEqual(si.Spec.Ports, want) || si.Labels[ManagedByLabel] != ManagedBy {
		t.Errorf("ServiceImport %+v %+v, want ClusterSetIP %+v labelled %s=%s", si.Labels, si.Spec, want, ManagedByLabel, ManagedBy)
	}
	eventually(t, 10*time.Second, "another owner's ServiceImport noticed", func() bool {
		return metricstest.Sum(t, r.reg, "strait_discovery_kube_writes_total", map[string]string{"result": "foreign"}) >= 1
	})
	if got, err := get("shop", "cart"); err != nil || got.Labels[ManagedByLabel] != "someone-else" || got.Spec.Type != mcsv1a1.Headless {
		t.Errorf("another owner's ServiceImport was changed: %+v, %v", got, err)
	}

	// Someone edits ours: put back. Someone deletes it: written again.
	si.Spec.Ports = si.Spec.Ports[:1]
	if _, err := imports("demo").Update(ctx, si, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "edited ServiceImport put back", func() bool {
		got, err := get("demo", "ledger")
		return err == nil && len(got.Spec.Ports) == 2
	})
	if err := imports("demo").Delete(ctx, "ledger", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "deleted ServiceImport written again", func() bool {
		_, err := get("demo", "ledger")
		return err == nil
	})

	// The import's ports change, then it goes.
	r.SetImports([]Import{{Namespace: "demo", Name: "ledger", Ports: []ImportPort{{Port: 80, Protocol: "http2"}}}})
	eventually(t, 10*time.Second, "ServiceImport updated", func() bool {
		got, err := get("demo", "ledger")
		return err == nil && len(got.Spec.Ports) == 1 && got.Spec.Ports[0].AppProtocol != nil && *got.Spec.Ports[0].AppProtocol == "kubernetes.io/h2c"
	})
	r.SetImports(nil)
	eventually(t, 10*time.Second, "ServiceImport deleted", func() bool {
		_, err := get("demo", "ledger")
		return apierrors.IsNotFound(err)
	})
	if _, err := get("shop", "cart"); err != nil {
		t.Errorf("another owner's ServiceImport deleted with ours: %v", err)
	}
}

// TestAPIServerRestartKeepsCatalog: while the API server is down the last
// good service list stays, a metric and a log line say so, and once it is
// back discovery follows it again.
func TestAPIServerRestartKeepsCatalog(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.namespace(t, "demo")
	r := startSource(t, c.Config(kubetest.Admin), Config{})
	for _, name := range []string{"a", "b"} {
		if _, err := c.core.CoreV1().Services("demo").Create(ctx, apiService("demo", name, webPort("")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.core.DiscoveryV1().EndpointSlices("demo").Create(ctx, apiSlice("demo", name, 8080, "10.2.0.1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.mcs.MulticlusterV1alpha1().ServiceExports("demo").Create(ctx, apiExport("demo", name, ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, follow, "two services", func() bool { return len(r.Services()) == 2 })
	before := r.Services()
	reachable := func() float64 { return metricstest.Sum(t, r.reg, "strait_discovery_kube_api_reachable", nil) }
	if reachable() != 1 {
		t.Fatalf("strait_discovery_kube_api_reachable = %v with the API server up", reachable())
	}

	stop := time.Now()
	c.Stop(t)
	t.Logf("API server stopped in %s", time.Since(stop).Round(time.Millisecond))
	took := eventually(t, 15*time.Second, "outage noticed", func() bool { return reachable() == 0 })
	t.Logf("outage noticed %s after the stop", took)
	if !strings.Contains(r.logs.String(), "kubernetes API server unreachable; serving the last good service list") {
		t.Error("no log line says the API server is unreachable")
	}
	if !reflect.DeepEqual(r.Services(), before) {
		t.Fatalf("services changed while the API server was down: %v", r.Services())
	}
	// A while of retries later, still the same list.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if !reflect.DeepEqual(r.Services(), before) {
			t.Fatalf("services changed while the API server was down: %v", r.Services())
		}
		time.Sleep(50 * time.Millisecond)
	}

	c.Restart(t)
	took = eventually(t, 40*time.Second, "API server reachable again", func() bool { return reachable() == 1 })
	t.Logf("API server reachable again %s after it was ready", took)
	if !strings.Contains(r.logs.String(), "kubernetes API server reachable again") {
		t.Error("no log line says the API server is back")
	}
	if !reflect.DeepEqual(r.Services(), before) {
		t.Errorf("services after the restart %v, want %v", r.Services(), before)
	}
	if err := c.mcs.MulticlusterV1alpha1().ServiceExports("demo").Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, 40*time.Second, "a change after the restart followed", func() bool { return len(r.Services()) == 1 })
	t.Logf("first change after the restart seen in %s", took)
}
