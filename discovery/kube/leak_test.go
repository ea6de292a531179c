package kube

import (
	"context"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/straitmesh/strait/internal/kubetest"
)

// TestCloseStopsEverything: after Close no goroutine of the source is
// left: informers, the rebuild loop, the writer and the connections to
// the API server all end.
func TestCloseStopsEverything(t *testing.T) {
	c := startCluster(t)
	c.namespace(t, "demo")
	if _, err := c.core.CoreV1().Services("demo").Create(context.Background(), apiService("demo", "ledger", webPort("")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	s, err := New(Config{SyncTimeout: 20 * time.Second}, Options{RestConfig: c.Config(kubetest.Admin)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.SetImports([]Import{{Namespace: "demo", Name: "profile", Ports: []ImportPort{{Port: 80}}}})
	eventually(t, 10*time.Second, "ServiceImport written", func() bool {
		_, err := c.mcs.MulticlusterV1alpha1().ServiceImports("demo").Get(context.Background(), "profile", metav1.GetOptions{})
		return err == nil
	})
	running := runtime.NumGoroutine()
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before Start, %d running, %d after Close:\n%s", before, running, n, buf[:runtime.Stack(buf, true)])
	}
}
