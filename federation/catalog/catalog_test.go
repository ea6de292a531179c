package catalog

import (
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/internal/fakeclock"
)

var (
	testKey  = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	otherKey = base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
)

type testNode struct {
	name, cluster, region, key string
	join                       []string
	svcs                       []Service
	scope                      Scope
	now                        func() time.Time
	cfg                        func(*Config)
	signing                    *Signing
}

func start(t *testing.T, n testNode) *Catalog {
	t.Helper()
	if n.cluster == "" {
		n.cluster = n.name
	}
	if n.region == "" {
		n.region = "r-" + n.name
	}
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Bind, cfg.Profile, cfg.Key, cfg.Join = n.name, "127.0.0.1:0", "local", n.key, n.join
	if n.key == "" {
		cfg.Insecure = true
	}
	if n.cfg != nil {
		n.cfg(&cfg)
	}
	c, err := New(cfg, Self{Cluster: n.cluster, Region: n.region, DataAddr: "127.0.0.1:1"}, n.svcs,
		Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Scope: n.scope, Now: n.now, Signing: n.signing})
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
	deadline := time.After(15 * time.Second)
	for !cond(c.Snapshot()) {
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			for _, v := range c.Snapshot().Clusters {
				t.Logf("%s sees %s: state %s reachable %v services %v", c.Name(), v.Node, v.State, v.Reachable, v.Services)
			}
			t.Fatalf("%s: %s not seen within 15s", c.Name(), what)
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

func names(v *ClusterView) []string {
	if v == nil {
		return nil
	}
	var out []string
	for _, s := range v.Services {
		out = append(out, s.Name)
	}
	return out
}

func TestCatalogConvergesAndPropagatesChanges(t *testing.T) {
	a := start(t, testNode{name: "a", key: testKey, svcs: []Service{svc("echo", 2)}})
	b := start(t, testNode{name: "b", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("ledger", 2), svc("old", 1)}})
	c := start(t, testNode{name: "c", key: testKey, join: []string{a.GossipAddr()}})

	for _, cat := range []*Catalog{a, b, c} {
		waitView(t, cat, "all three with services", func(s *Snapshot) bool {
			va, vb, vc := view(s, "a"), view(s, "b"), view(s, "c")
			return va != nil && vb != nil && vc != nil && va.Reachable && vb.Reachable && len(va.Services) == 1 && len(vb.Services) == 2
		})
	}
	if ex := c.Snapshot().Exporters("demo", "ledger", 8080); len(ex) != 1 || ex[0].Cluster != "b" {
		t.Fatalf("exporters of demo/ledger seen by c: %v", ex)
	}

	// b's ledger loses every healthy endpoint and "old" is deleted.
	b.SetServices([]Service{svc("ledger", 0)})
	for _, cat := range []*Catalog{a, c} {
		waitView(t, cat, "ledger unhealthy, old gone", func(s *Snapshot) bool {
			return len(s.Exporters("demo", "ledger", 8080)) == 0 && s.Known("demo", "ledger") && !s.Known("demo", "old")
		})
	}

	// b leaves: marked left and unreachable, entry kept (static stability).
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, cat := range []*Catalog{a, c} {
		waitView(t, cat, "b left", func(s *Snapshot) bool {
			v := view(s, "b")
			return v != nil && !v.Reachable && v.State == "left" && len(v.Services) == 1 && !s.ClusterReachable("b")
		})
	}
}

func TestCatalogMarksCrashedGatewayDead(t *testing.T) {
	a := start(t, testNode{name: "a", key: testKey})
	b := start(t, testNode{name: "b", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("x", 1)}})
	waitView(t, a, "b", func(s *Snapshot) bool { return len(s.Exporters("demo", "x", 8080)) == 1 })
	b.Kill()
	waitView(t, a, "b dead", func(s *Snapshot) bool {
		v := view(s, "b")
		return v != nil && v.State == "dead" && !v.Reachable && len(s.Exporters("demo", "x", 8080)) == 0
	})
}

// Two gateways of one cluster each own their part; neither overwrites the other.
func TestCatalogHAPairDoesNotFight(t *testing.T) {
	a := start(t, testNode{name: "obs", key: testKey})
	g1 := start(t, testNode{name: "c-gw1", cluster: "c", region: "eu", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("x", 2)}})
	g2 := start(t, testNode{name: "c-gw2", cluster: "c", region: "eu", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("x", 2)}})
	waitView(t, a, "both gateways of c", func(s *Snapshot) bool { return len(s.Exporters("demo", "x", 8080)) == 2 })
	g1.SetServices([]Service{svc("x", 0)})
	g2.SetServices([]Service{svc("x", 2), svc("y", 1)})
	waitView(t, a, "each gateway's own change", func(s *Snapshot) bool {
		ex := s.Exporters("demo", "x", 8080)
		return len(ex) == 1 && ex[0].Node == "c-gw2" && slices.Equal(names(view(s, "c-gw1")), []string{"x"}) &&
			slices.Equal(names(view(s, "c-gw2")), []string{"x", "y"})
	})
	g2.Kill()
	waitView(t, a, "cluster c still reachable through gw1", func(s *Snapshot) bool {
		return view(s, "c-gw2").State == "dead" && s.ClusterReachable("c")
	})
}

// whole returns hdr with recs as an unsigned whole entry, its digest set.
func whole(hdr nodeHeader, recs ...*record) *wireNode {
	set := map[string]*record{}
	for _, r := range recs {
		set[r.Key()] = r
	}
	hdr.Full, hdr.Digest = true, entryDigest(set)
	return &wireNode{nodeHeader: hdr, Records: recs}
}

func TestCatalogVersionsAndEcho(t *testing.T) {
	a := start(t, testNode{name: "a", key: testKey, svcs: []Service{svc("mine", 1)}})
	hdr := nodeHeader{Node: "x", Cluster: "x", Region: "r", Gateway: "127.0.0.1:9", Version: 5}
	rec := func(name string, v uint64) *record {
		return &record{Service: Service{Namespace: "demo", Name: name, Ports: []Port{{Port: 80}}, Healthy: 1, Total: 1}, Version: v}
	}
	a.merge([]*wireNode{whole(hdr, rec("new", 10))}, true)
	stale := rec("new", 9)
	stale.Healthy = 0
	a.merge([]*wireNode{whole(hdr, stale)}, true)
	older := hdr
	older.Version = 4
	a.merge([]*wireNode{whole(older, stale)}, false)
	a.publishNow()
	if v := view(a.Snapshot(), "x"); v == nil || len(v.Services) != 1 || v.Services[0].Healthy != 1 {
		t.Fatalf("older version overwrote newer: %+v", v)
	}
	// Our own record echoed back with a higher version (from before a
	// restart, say) is re-issued with a newer one, so ours wins everywhere.
	own := a.nodes["a"].public["demo/mine"]
	ghost := rec("mine", own.Version+100)
	ghost.Healthy = 0
	gone := rec("removed-before-restart", own.Version+5)
	a.merge([]*wireNode{whole(nodeHeader{Node: "a", Cluster: "a", Region: "r-a", Version: own.Version + 200}, ghost, gone)}, false)
	a.mu.Lock()
	cur, tomb := a.nodes["a"].public["demo/mine"], a.nodes["a"].public["demo/removed-before-restart"]
	hv := a.nodes["a"].Version
	a.mu.Unlock()
	if cur.Version <= ghost.Version || cur.Healthy != 1 || hv < cur.Version {
		t.Fatalf("own record after stale echo: %+v (header version %d)", cur, hv)
	}
	if tomb == nil || !tomb.Deleted || tomb.Version <= gone.Version {
		t.Fatalf("unknown own record echoed: want newer tombstone, got %+v", tomb)
	}
}

func TestCatalogTombstonesAreCollectedAndNotResurrected(t *testing.T) {
	clock := fakeclock.New(time.Now())
	a := start(t, testNode{name: "a", key: testKey, now: clock.Now, svcs: []Service{svc("mine", 1)}})
	hdr := nodeHeader{Node: "x", Cluster: "x", Region: "r", Gateway: "127.0.0.1:9", Version: 5}
	live := &record{Service: Service{Namespace: "demo", Name: "s", Ports: []Port{{Port: 80}}, Healthy: 1, Total: 1}, Version: 10}
	a.merge([]*wireNode{whole(hdr, live)}, true)
	tomb := &record{Service: Service{Namespace: "demo", Name: "s"}, Version: 11, Deleted: true}
	h6 := hdr
	h6.Version = 6
	a.merge([]*wireNode{whole(h6, tomb)}, true)
	a.publishNow()
	if a.Snapshot().Known("demo", "s") {
		t.Fatal("deleted service still in view")
	}
	// A late copy of the live record must not bring it back.
	a.merge([]*wireNode{whole(hdr, live)}, false)
	a.publishNow()
	if a.Snapshot().Known("demo", "s") {
		t.Fatal("tombstone lost to an older copy")
	}
	// Our own tombstone is ours to collect: after the grace period, with
	// a new version of our entry.
	a.mu.Lock()
	a.nodes["x"].state = "alive" // as memberlist would say
	a.mu.Unlock()
	a.SetServices(nil)
	a.mu.Lock()
	v0 := a.nodes["a"].Version
	a.mu.Unlock()
	clock.Add(59 * time.Minute)
	a.collect()
	if _, ok := a.nodes["a"].public["demo/mine"]; !ok {
		t.Fatal("tombstone collected before the grace period")
	}
	clock.Add(2 * time.Minute)
	a.collect()
	a.mu.Lock()
	_, kept := a.nodes["a"].public["demo/mine"]
	v1 := a.nodes["a"].Version
	a.mu.Unlock()
	if kept || v1 <= v0 {
		t.Fatalf("own tombstone after the grace period: kept %v, version %d -> %d", kept, v0, v1)
	}
	// Another gateway's tombstone is in its signed digest: its owner
	// collects it, not us.
	if _, ok := a.nodes["x"].public["demo/s"]; !ok {
		t.Fatal("another gateway's tombstone collected here")
	}

	// A departed gateway is collected after the grace period and its old
	// state, arriving later through push/pull, is not resurrected.
	a.mu.Lock()
	a.nodes["x"].state, a.nodes["x"].stateAt = "left", clock.Now()
	a.mu.Unlock()
	clock.Add(61 * time.Minute)
	a.collect()
	a.publishNow()
	if view(a.Snapshot(), "x") != nil {
		t.Fatal("departed gateway not collected")
	}
	a.merge([]*wireNode{whole(h6, tomb)}, false)
	a.publishNow()
	if view(a.Snapshot(), "x") != nil {
		t.Fatal("collected gateway resurrected by old state")
	}
	newer := hdr
	newer.Version = 100
	a.merge([]*wireNode{whole(newer, &record{Service: live.Service, Version: 101})}, true)
	a.publishNow()
	if v := view(a.Snapshot(), "x"); v == nil || len(v.Services) != 1 {
		t.Fatal("gateway that came back with newer state not accepted")
	}
}

func TestCatalogWithoutKeyCannotJoinOrRead(t *testing.T) {
	a := start(t, testNode{name: "a", key: testKey, svcs: []Service{svc("secret", 1)}})
	for _, tc := range []struct{ name, key string }{{"no key", ""}, {"wrong key", otherKey}} {
		t.Run(tc.name, func(t *testing.T) {
			x := start(t, testNode{name: "x-" + strings.ReplaceAll(tc.name, " ", "-"), key: tc.key})
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

func TestConfigRequiresKeyUnlessInsecure(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate("gossip."); err == nil || !strings.Contains(err.Error(), "gossip.key: required") {
		t.Fatalf("no key: %v", err)
	}
	cfg.Insecure = true
	if err := cfg.Validate("gossip."); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	cfg.Key = testKey
	if err := cfg.Validate("gossip."); err == nil || !strings.Contains(err.Error(), "insecure") {
		t.Fatalf("insecure with key: %v", err)
	}
}

// Rotation without downtime: install, use, remove, applied federation-wide;
// the keyring file survives a restart; the retired key no longer gets in.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "keyring.json")
	a := start(t, testNode{name: "a", key: testKey, cfg: func(c *Config) { c.KeyringFile = kf }})
	b := start(t, testNode{name: "b", key: testKey, join: []string{a.GossipAddr()}})
	c := start(t, testNode{name: "c", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("s", 1)}})
	waitView(t, a, "all three", func(s *Snapshot) bool {
		return a.Members() == 3 && b.Members() == 3 && c.Members() == 3 && s.Known("demo", "s")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, op := range []struct{ op, key string }{{"install", otherKey}, {"use", otherKey}, {"remove", testKey}} {
		res, err := a.KeyOp(ctx, op.op, op.key)
		if err != nil || !res.Complete || len(res.Applied) != 3 {
			t.Fatalf("%s: %+v %v", op.op, res, err)
		}
	}
	for _, cat := range []*Catalog{a, b, c} {
		st, err := cat.Keys()
		if err != nil || st.Primary != otherKey || !slices.Equal(st.Keys, []string{otherKey}) {
			t.Fatalf("%s keys after rotation: %+v %v", cat.Name(), st, err)
		}
	}
	// Gossip still flows with the new key.
	c.SetServices([]Service{svc("s", 0)})
	waitView(t, b, "change after rotation", func(s *Snapshot) bool { return len(s.Exporters("demo", "s", 8080)) == 0 && s.Known("demo", "s") })
	// The old key no longer gets in; the new one does.
	old := start(t, testNode{name: "old", key: testKey})
	if _, err := old.Join([]string{a.GossipAddr()}); err == nil {
		t.Fatal("joined with the retired key")
	}
	fresh := start(t, testNode{name: "fresh", key: otherKey, join: []string{a.GossipAddr()}})
	waitView(t, fresh, "catalog with the new key", func(s *Snapshot) bool { return s.Known("demo", "s") })
	// The keyring file holds the new state, so a restart keeps it.
	b2, err := os.ReadFile(kf)
	if err != nil || !strings.Contains(string(b2), otherKey) || strings.Contains(string(b2), testKey) {
		t.Fatalf("keyring file: %s %v", b2, err)
	}
	keys, err := (Config{KeyringFile: kf, Key: testKey}).keys()
	if err != nil || len(keys) != 1 || base64.StdEncoding.EncodeToString(keys[0]) != otherKey {
		t.Fatalf("restart keys: %v %v", keys, err)
	}
	if _, err := a.KeyOp(ctx, "remove", otherKey); err == nil {
		t.Fatal("removing the primary key succeeded")
	}
}

// regionScope is a test double for the residency engine: listed services
// may only be seen in the listed regions.
type regionScope map[string][]string

func (s regionScope) CatalogRegions(ns, name string, _ map[string]string) ([]string, bool) {
	r, ok := s[ns+"/"+name]
	return r, ok
}

func TestScopeWithholdsEntriesFromOtherRegions(t *testing.T) {
	scope := regionScope{"demo/ledger": {"eu-west", "eu-central"}}
	owner := start(t, testNode{name: "owner", region: "eu-west", key: testKey, scope: scope, svcs: []Service{svc("ledger", 1), svc("echo", 1)}})
	eu := start(t, testNode{name: "eu", region: "eu-central", key: testKey, join: []string{owner.GossipAddr()}})
	us := start(t, testNode{name: "us", region: "us-east", key: testKey, join: []string{owner.GossipAddr()}})
	waitView(t, eu, "ledger and echo", func(s *Snapshot) bool { return s.Known("demo", "ledger") && s.Known("demo", "echo") })
	waitView(t, us, "echo", func(s *Snapshot) bool { return s.Known("demo", "echo") })
	// Force full-state exchanges in every direction: push/pull must not relay it.
	for _, c := range []*Catalog{us, eu} {
		for _, peer := range []*Catalog{owner, eu, us} {
			if peer != c {
				if _, err := c.Join([]string{peer.GossipAddr()}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	owner.SetServices([]Service{svc("ledger", 2), svc("echo", 2)})
	waitView(t, us, "echo update", func(s *Snapshot) bool {
		v := view(s, "owner")
		return v != nil && len(v.Services) == 1 && v.Services[0].Healthy == 2
	})
	if us.Snapshot().Known("demo", "ledger") {
		t.Fatal("us-east learned a region-only service")
	}
	for _, c := range []*Catalog{owner, eu, us} {
		m, err := DecodeMessage((*delegate)(c).LocalState(false))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range m.Nodes {
			for _, r := range n.Records {
				if r.Name == "ledger" && (!r.Deleted || r.Scoped) {
					t.Fatalf("%s's push/pull state carries ledger: %+v", c.Name(), r)
				}
			}
		}
	}
	// Our own entry echoed back unchanged by a full-state exchange (the
	// public tombstone of the scoped service, same version) changes
	// nothing: the service stays visible to its owner and its region.
	m, err := DecodeMessage((*delegate)(eu).LocalState(false))
	if err != nil {
		t.Fatal(err)
	}
	owner.merge(m.Nodes, false)
	owner.publishNow()
	if !owner.Snapshot().Known("demo", "ledger") {
		t.Fatal("owner lost its region-only service to its own echo")
	}
	if r := owner.nodes["owner"].scoped["demo/ledger"]; r == nil || r.Deleted {
		t.Fatalf("scoped record after echo: %+v", r)
	}
	// Lifting the restriction publishes it to everyone.
	owner.SetScope(regionScope{})
	waitView(t, us, "ledger once unrestricted", func(s *Snapshot) bool { return s.Known("demo", "ledger") })
	// Restricting again withdraws it from us-east.
	owner.SetScope(scope)
	waitView(t, us, "ledger withdrawn", func(s *Snapshot) bool { return !s.Known("demo", "ledger") })
	waitView(t, eu, "ledger kept in eu", func(s *Snapshot) bool { return s.Known("demo", "ledger") })
}
