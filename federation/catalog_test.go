package federation

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var testKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func newTestCatalog(t *testing.T, name, key string, join []string, svcs []Service) *Catalog {
	t.Helper()
	cfg := Config{NodeName: name, Bind: "127.0.0.1:0", Profile: "local", Key: key, Join: join}
	c, err := New(cfg, Self{Cluster: name, Region: "r-" + name, DataAddr: "127.0.0.1:1"}, svcs, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(context.Background()) })
	return c
}

func svc(name string, healthy int) Service {
	return Service{Namespace: "demo", Name: name, Ports: []Port{{Port: 8080}}, Healthy: healthy, Total: 2}
}

// waitView waits until c's snapshot satisfies cond.
func waitView(t *testing.T, c *Catalog, what string, cond func(*Snapshot) bool) {
	t.Helper()
	ch, stop := c.Watch()
	defer stop()
	deadline := time.After(10 * time.Second)
	for !cond(c.Snapshot()) {
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			for _, v := range c.Snapshot().Clusters {
				t.Logf("%s sees %s: state %s reachable %v services %d", c.Name(), v.Node, v.State, v.Reachable, len(v.Services))
			}
			t.Fatalf("%s: %s not seen within 10s", c.Name(), what)
		}
	}
}

func view(s *Snapshot, node string) *ClusterView {
	for _, c := range s.Clusters {
		if c.Node == node {
			return c
		}
	}
	return nil
}

func TestCatalogConvergesAndPropagatesChanges(t *testing.T) {
	a := newTestCatalog(t, "a", testKey, nil, []Service{svc("echo", 2)})
	b := newTestCatalog(t, "b", testKey, []string{a.GossipAddr()}, []Service{svc("ledger", 2)})
	c := newTestCatalog(t, "c", testKey, []string{a.GossipAddr()}, nil)

	for _, cat := range []*Catalog{a, b, c} {
		waitView(t, cat, "all three with services", func(s *Snapshot) bool {
			va, vb, vc := view(s, "a"), view(s, "b"), view(s, "c")
			return va != nil && vb != nil && vc != nil && va.Reachable && vb.Reachable && len(va.Services) == 1 && len(vb.Services) == 1
		})
	}
	if ex := c.Snapshot().Exporters("demo", "ledger", 8080); len(ex) != 1 || ex[0].Cluster != "b" {
		t.Fatalf("exporters of demo/ledger seen by c: %v", ex)
	}

	// b's ledger loses every healthy endpoint: the others stop routing to it.
	b.SetServices([]Service{svc("ledger", 0)})
	for _, cat := range []*Catalog{a, c} {
		waitView(t, cat, "ledger unhealthy", func(s *Snapshot) bool {
			return len(s.Exporters("demo", "ledger", 8080)) == 0 && s.Known("demo", "ledger")
		})
	}

	// b leaves: marked unreachable, entry kept (static stability).
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, cat := range []*Catalog{a, c} {
		waitView(t, cat, "b left", func(s *Snapshot) bool {
			v := view(s, "b")
			return v != nil && !v.Reachable && v.State == "left" && len(v.Services) == 1
		})
	}
}

func TestCatalogNewerVersionWins(t *testing.T) {
	a := newTestCatalog(t, "a", testKey, nil, nil)
	newer := &Entry{Node: "x", Cluster: "x", Region: "r", Gateway: "127.0.0.1:9", Version: 10, Services: []Service{svc("new", 1)}}
	older := &Entry{Node: "x", Cluster: "x", Region: "r", Gateway: "127.0.0.1:9", Version: 9, Services: []Service{svc("old", 1)}}
	a.merge([]*Entry{newer})
	a.merge([]*Entry{older})
	v := view(a.Snapshot(), "x")
	if v == nil || v.Version != 10 || v.Services[0].Name != "new" {
		t.Fatalf("after newer then older: %+v", v)
	}
	// Our own entry echoed back with a higher version (from before a
	// restart) makes us jump past it, so our current state wins.
	own := view(a.Snapshot(), "a")
	a.merge([]*Entry{{Node: "a", Cluster: "a", Region: "r-a", Gateway: "x", Version: own.Version + 100}})
	if got := view(a.Snapshot(), "a"); got.Version <= own.Version+100 || len(got.Services) != 0 {
		t.Fatalf("own entry after stale echo: %+v", got)
	}
}

func TestCatalogWithoutKeyCannotJoinOrRead(t *testing.T) {
	a := newTestCatalog(t, "a", testKey, nil, []Service{svc("secret", 1)})
	other := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	for _, tc := range []struct{ name, key string }{{"no key", ""}, {"wrong key", other}} {
		t.Run(tc.name, func(t *testing.T) {
			x := newTestCatalog(t, "x-"+fmt.Sprint(len(tc.key)), tc.key, nil, nil)
			if n, err := x.Join([]string{a.GossipAddr()}); err == nil {
				t.Fatalf("joined %d members without the key", n)
			}
			if s := x.Snapshot(); len(s.Clusters) != 1 || s.Known("demo", "secret") {
				t.Fatalf("outsider learned %d clusters", len(s.Clusters))
			}
			if n := a.Members(); n != 1 {
				t.Fatalf("a has %d members, outsider got in", n)
			}
		})
	}
}
