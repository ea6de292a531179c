package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// classCache keeps, per service, the residency classes its services
// matchers put it in (sovereignty.ServiceClasses), so that a flow's
// decision only looks at what the flow carries: its source namespace and
// headers. What it holds depends on the policy, the catalog and the local
// services, so each generation is for one of each; a flow that sees any
// of them change starts a new generation, and the old one is dropped.
// Readers never lock: a generation is swapped atomically and its entries
// are a sync.Map, written once per service.
type classCache struct {
	out atomic.Pointer[classGen] // outbound: every cluster's labels
	in  atomic.Pointer[classGen] // inbound: this cluster's labels
}

// classGen is one generation of a classCache.
type classGen struct {
	eng      *sovereignty.Engine
	snap     *catalog.Snapshot // nil for inbound generations
	services uint64            // localTable.services
	m        sync.Map          // svcKey -> sovereignty.ServiceClasses
}

type svcKey struct{ namespace, name string }

// generation returns the generation of p for eng, snap and services,
// starting one when p holds another.
func generation(p *atomic.Pointer[classGen], eng *sovereignty.Engine, snap *catalog.Snapshot, services uint64) *classGen {
	cur := p.Load()
	if cur != nil && cur.eng == eng && cur.snap == snap && cur.services == services {
		return cur
	}
	g := &classGen{eng: eng, snap: snap, services: services}
	if p.CompareAndSwap(cur, g) {
		return g
	}
	// Another flow started one first; use it if it is for the same inputs.
	if cur = p.Load(); cur != nil && cur.eng == eng && cur.snap == snap && cur.services == services {
		return cur
	}
	return g
}

// outbound returns the classes of t for a flow leaving this gateway: by
// the labels every cluster exports t with, this one's included
// (route.ServiceClasses). Only known services are kept, so flows to names
// nobody exports cannot grow the cache.
func (c *classCache) outbound(eng *sovereignty.Engine, snap *catalog.Snapshot, local *localTable, lv route.LocalView, t wire.Target) sovereignty.ServiceClasses {
	gen := generation(&c.out, eng, snap, local.services)
	k := svcKey{t.Namespace, t.Name}
	if v, ok := gen.m.Load(k); ok {
		return v.(sovereignty.ServiceClasses)
	}
	s := route.ServiceClasses(eng, lv, snap, t)
	if lv.Exists || snap.Known(t.Namespace, t.Name) {
		gen.m.Store(k, s)
	}
	return s
}

// inbound returns the classes of t, which this cluster exports with
// labels, for a stream arriving from a peer.
func (c *classCache) inbound(eng *sovereignty.Engine, local *localTable, t wire.Target, labels map[string]string) sovereignty.ServiceClasses {
	gen := generation(&c.in, eng, nil, local.services)
	k := svcKey{t.Namespace, t.Name}
	if v, ok := gen.m.Load(k); ok {
		return v.(sovereignty.ServiceClasses)
	}
	s := eng.ServiceClasses(t.Namespace, t.Name, labels)
	gen.m.Store(k, s)
	return s
}
