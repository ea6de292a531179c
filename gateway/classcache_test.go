package gateway

import (
	"net/http"
	"sync"
	"testing"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

const cachePolicy = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: cache}
spec:
  regionGroups:
    eu: [eu-west, eu-central]
    us: [us-east]
  classes:
    - name: pii-eu
      allowedRegions: [eu]
      match:
        services:
          - labels: {data-class: pii-eu}
        headers:
          - {name: x-data-residency, value: eu}
  default: allow
`

func cacheSnapshot(labels map[string]string) *catalog.Snapshot {
	v := &catalog.ClusterView{Entry: catalog.Entry{Node: "eu-west-1", Cluster: "eu-west-1", Region: "eu-west", Gateway: "eu-west-1:15443"},
		Reachable: true, State: "alive"}
	v.Services = []catalog.Service{{Namespace: "demo", Name: "ledger", Labels: labels, Healthy: 1, Total: 1, Ports: []catalog.Port{{Port: 8080}}}}
	return &catalog.Snapshot{Local: "us-east-1", Clusters: []*catalog.ClusterView{v}}
}

// TestClassCacheFollowsPolicyAndCatalog: the classes a flow is decided on
// are those of the policy and catalog in force. A new policy, a new
// catalog snapshot (another cluster's labels) or a new list of local
// services starts a new generation; the same inputs reuse it; a service
// nobody exports is computed but never kept.
func TestClassCacheFollowsPolicyAndCatalog(t *testing.T) {
	eng := mustEngine(t, cachePolicy)
	var c classCache
	local := &localTable{byKey: nil, services: 1}
	tgt := wire.Target{Namespace: "demo", Name: "ledger", Port: 8080}
	self := route.Self{Cluster: "us-east-1", Region: "us-east"}
	decide := func(eng *sovereignty.Engine, snap *catalog.Snapshot, local *localTable) sovereignty.Decision {
		t.Helper()
		in := route.FlowIn{Entry: "test", Service: c.outbound(eng, snap, local, route.LocalView{}, tgt)}
		if !in.Service.For(eng) {
			t.Fatal("the cache handed out classes of another engine")
		}
		p := route.NewPlan(self, route.LocalView{}, snap, eng, tgt, in, nil)
		if len(p.Considered) != 1 {
			t.Fatalf("plan considered %d clusters, want 1", len(p.Considered))
		}
		return p.Considered[0].Decision
	}

	plain := cacheSnapshot(map[string]string{"app": "ledger"})
	if d := decide(eng, plain, local); !d.Allow {
		t.Fatalf("unlabelled ledger from us-east: %+v", d)
	}
	gen := c.out.Load()
	decide(eng, plain, local)
	if c.out.Load() != gen {
		t.Error("the same policy, catalog and local services started a new generation")
	}

	// The exporting cluster labels the service: the next snapshot counts.
	labelled := cacheSnapshot(map[string]string{"data-class": "pii-eu"})
	if d := decide(eng, labelled, local); d.Allow || d.Rule.ID != "class:pii-eu" {
		t.Fatalf("after the catalog change: %+v, want refused by class:pii-eu", d)
	}
	if c.out.Load() == gen {
		t.Error("a new catalog snapshot kept the old generation")
	}

	// A new policy (the same document compiled again is another engine).
	eng2 := mustEngine(t, cachePolicy)
	gen = c.out.Load()
	if d := decide(eng2, labelled, local); d.Allow {
		t.Fatalf("after the policy change: %+v", d)
	}
	if c.out.Load() == gen {
		t.Error("a new policy kept the old generation")
	}

	// New local services.
	gen = c.out.Load()
	decide(eng2, labelled, &localTable{services: 2})
	if c.out.Load() == gen {
		t.Error("new local services kept the old generation")
	}

	// A name nobody exports is not kept.
	ghost := wire.Target{Namespace: "demo", Name: "ghost", Port: 1}
	if s := c.outbound(eng2, labelled, &localTable{services: 2}, route.LocalView{}, ghost); !s.For(eng2) {
		t.Error("classes of an unknown service are not for the engine")
	}
	if _, kept := c.out.Load().m.Load(svcKey{"demo", "ghost"}); kept {
		t.Error("the cache kept a service nobody exports")
	}

	// Inbound: this cluster's labels, per policy and local services.
	in := c.inbound(eng2, local, tgt, map[string]string{"data-class": "pii-eu"})
	if in != eng2.ServiceClasses("demo", "ledger", map[string]string{"data-class": "pii-eu"}) {
		t.Errorf("inbound classes %+v", in)
	}
	if got := c.inbound(eng, local, tgt, nil); !got.For(eng) || got == in {
		t.Errorf("inbound classes kept across a policy change: %+v", got)
	}
}

// TestClassCacheConcurrentUse: flows on many goroutines share the cache
// while the catalog changes under them; with -race it proves readers need
// no lock, and every flow is decided on the labels of its own snapshot.
func TestClassCacheConcurrentUse(t *testing.T) {
	eng := mustEngine(t, cachePolicy)
	var c classCache
	local := &localTable{services: 1}
	tgt := wire.Target{Namespace: "demo", Name: "ledger", Port: 8080}
	snaps := []*catalog.Snapshot{cacheSnapshot(nil), cacheSnapshot(map[string]string{"data-class": "pii-eu"})}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				snap := snaps[(i+w)%2]
				s := c.outbound(eng, snap, local, route.LocalView{}, tgt)
				f := sovereignty.Flow{Namespace: "demo", Name: "ledger", SourceRegion: "us-east", Service: s,
					Headers: http.Header{"Accept": {"*/*"}}}
				d := eng.Decide(&f, sovereignty.Candidate{Cluster: "eu-west-1", Region: "eu-west"})
				if want := snap == snaps[0]; d.Allow != want {
					errs <- "a flow was decided on another snapshot's labels"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
