package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/internal/kubetest"
)

// ownService returns service ns/name as the gateway's own catalog entry
// exports it.
func ownService(g *gateway.Gateway, ns, name string) (catalog.Service, bool) {
	snap := g.Catalog().Snapshot()
	for _, c := range snap.Clusters {
		if c.Node == snap.Local {
			return c.Service(ns, name)
		}
	}
	return catalog.Service{}, false
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGatewayFileDiscovery: with discovery.source file the gateway
// exports the services file's list and follows its changes.
func TestGatewayFileDiscovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("services:\n  - {namespace: demo, name: ledger, ports: [{port: 8080, protocol: http}], endpoints: [127.0.0.1]}\n")
	cfg := gateway.DefaultConfig()
	cfg.Discovery.Source, cfg.Discovery.File.Path = gateway.DiscoveryFile, path
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := ownService(g, "demo", "ledger"); !ok || len(s.Ports) != 1 || s.Ports[0].Protocol != "http" {
		t.Fatalf("demo/ledger as exported: %+v %v", s, ok)
	}
	write("services:\n  - {namespace: demo, name: audit, ports: [{port: 9000}], endpoints: [127.0.0.1]}\n")
	waitUntil(t, 5*time.Second, "file change in the catalog", func() bool {
		_, old := ownService(g, "demo", "ledger")
		_, fresh := ownService(g, "demo", "audit")
		return !old && fresh
	})
}

// TestGatewayFileDiscoveryRefusesABadFile: a services file that does not
// parse stops the start with an error naming the file and line.
func TestGatewayFileDiscoveryRefusesABadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(path, []byte("services:\n  - {namespace: demo, name: x, ports: [{port: 0}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := gateway.DefaultConfig()
	cfg.Discovery.Source, cfg.Discovery.File.Path = gateway.DiscoveryFile, path
	if _, err := startGateway(t, cfg); err == nil || !strings.Contains(err.Error(), path+":2:") || !strings.Contains(err.Error(), "services.0.ports.0.port") {
		t.Fatalf("start with a bad services file: %v", err)
	}
}

// TestGatewayKubernetesDiscovery: with discovery.source kubernetes and a
// kubeconfig, the gateway exports what ServiceExports name, follows the
// API, sets the export's conditions and keeps a ServiceImport for each
// import of its config.
func TestGatewayKubernetesDiscovery(t *testing.T) {
	s := kubetest.Start(t, kubetest.Options{})
	s.InstallMCS(t)
	ctx := context.Background()
	core := kubernetes.NewForConfigOrDie(s.Config(kubetest.Admin))
	mcs := mcsclient.NewForConfigOrDie(s.Config(kubetest.Admin))
	if _, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "ledger"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "ledger"}, Ports: []corev1.ServicePort{{Name: "web", Port: 80, AppProtocol: ptr.To("http")}}}}
	if _, err := core.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "ledger-1", Labels: map[string]string{"kubernetes.io/service-name": "ledger"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To[int32](8080)}}}
	if _, err := core.DiscoveryV1().EndpointSlices("demo").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	se := &mcsv1a1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "ledger", Annotations: map[string]string{"strait.io/labels": "data-class=pii-eu"}}}
	if _, err := mcs.MulticlusterV1alpha1().ServiceExports("demo").Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := gateway.DefaultConfig()
	cfg.Discovery.Source = gateway.DiscoveryKubernetes
	cfg.Discovery.Kubernetes.Kubeconfig = s.Kubeconfig(t, kubetest.Admin)
	cfg.Imports = []gateway.Import{{Service: "demo/profile", Port: 8080, Listen: "127.0.0.1:0", Protocol: "grpc"}}
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ownService(g, "demo", "ledger")
	// No endpoints: the API refuses loopback addresses in EndpointSlices,
	// and the gateway's health checks must dial nothing else.
	// discovery/kube's tests follow endpoints.
	if !ok || got.Total != 0 || len(got.Ports) != 1 || got.Ports[0].Port != 80 || got.Ports[0].Protocol != "http" || got.Labels["data-class"] != "pii-eu" {
		t.Fatalf("demo/ledger as exported at start: %+v %v", got, ok)
	}
	waitUntil(t, 10*time.Second, "ServiceImport demo/profile written", func() bool {
		si, err := mcs.MulticlusterV1alpha1().ServiceImports("demo").Get(ctx, "profile", metav1.GetOptions{})
		return err == nil && si.Spec.Type == mcsv1a1.ClusterSetIP && len(si.Spec.Ports) == 1 && si.Spec.Ports[0].Port == 8080
	})
	waitUntil(t, 10*time.Second, "Valid condition set", func() bool {
		se, err := mcs.MulticlusterV1alpha1().ServiceExports("demo").Get(ctx, "ledger", metav1.GetOptions{})
		return err == nil && len(se.Status.Conditions) == 2
	})
	if err := mcs.MulticlusterV1alpha1().ServiceExports("demo").Delete(ctx, "ledger", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, "unexported service gone from the catalog", func() bool {
		_, ok := ownService(g, "demo", "ledger")
		return !ok
	})
}
