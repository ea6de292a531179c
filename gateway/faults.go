package gateway

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/fault"
)

// The gateway's fault mode (faults.*, docs/drills.md): drills inject
// faults through the admin API, and the controller's rules decide what
// the gateway's sockets do while one is in force. The listeners but the
// admin and probe ones, the dialler of other gateways, the gossip
// transport and the Raft listener are under the rules; without
// faults.enabled none of them is wrapped at all.

// faultState is what the gateway keeps about the faults in force beyond
// the controller: the drain signal its inbound tunnels follow and the
// gossip addresses to rejoin when a fault that cut gossip ends.
type faultState struct {
	mu sync.Mutex
	// drain is closed while a drain fault is in force; a new one is made
	// when it ends.
	drain chan struct{}
	// gossip are the other members' gossip addresses seen at any change.
	gossip []string
}

// startFaults makes the controller and puts the dialler of other
// gateways under it.
func (g *Gateway) startFaults() error {
	g.fstate.drain = make(chan struct{})
	g.faults = fault.New(g.cfg.Faults, fault.Options{Cluster: g.cfg.Cluster, Logger: g.log, Registry: g.reg, OnChange: g.faultsChanged})
	g.dial = g.faults.Dial(g.dial, g.clusterAtData)
	if g.faults.Enabled() {
		g.log.Warn("fault mode is on (faults.enabled): operators can make this gateway fail on purpose", "maxLease", g.cfg.Faults.MaxLease)
	}
	return nil
}

func (g *Gateway) stopFaults() {
	for _, c := range g.faults.Collectors() {
		g.reg.Unregister(c)
	}
}

// runFaults expires fault leases until the gateway stops.
func (g *Gateway) runFaults() {
	if !g.faults.Enabled() {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.faults.Run(g.ctx)
	}()
}

// clusterAtData names the cluster whose gateway has the data address
// addr, from the catalog's signed entries.
func (g *Gateway) clusterAtData(addr string) string {
	if g.catalog == nil {
		return ""
	}
	for _, c := range g.catalog.Snapshot().Clusters {
		if c.Gateway == addr {
			return c.Cluster
		}
	}
	return ""
}

// raftDial is the dialler of outbound Raft under fault mode: a kill
// fails it and a freeze holds it (a Raft address names no cluster, so
// rules by peer do not apply). nil without fault mode.
func (g *Gateway) raftDial() func(ctx context.Context, addr string) (net.Conn, error) {
	if !g.faults.Enabled() {
		return nil
	}
	var d net.Dialer
	return g.faults.Dial(func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}, func(string) string { return "" })
}

// gossipTransport puts the catalog's transport under the rules.
func (g *Gateway) gossipTransport(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return g.faults.Gossip(t, func(addr string) string {
		if c := g.catalog; c != nil {
			return c.ClusterAt(addr)
		}
		return ""
	})
}

// cutsGossip: faults under which this gateway's gossip with some peer is
// dropped.
func cutsGossip(r *fault.Rules) bool {
	return r.Has(fault.Kill) || r.Has(fault.Freeze) || r.Has(fault.Blackhole) || r.Has(fault.Partition)
}

// faultsChanged follows a change of the rules: a drain fault drains the
// inbound tunnels, and when a fault that cut gossip ends the gateway
// joins the members it knew again, so that both sides refute what their
// failure detectors concluded at once rather than at the next push-pull.
func (g *Gateway) faultsChanged(old, next *fault.Rules) {
	g.fstate.mu.Lock()
	if g.catalog != nil {
		for _, a := range g.catalog.GossipAddrs() {
			if !slices.Contains(g.fstate.gossip, a) {
				g.fstate.gossip = append(g.fstate.gossip, a)
			}
		}
	}
	switch {
	case next.Has(fault.Drain) && !old.Has(fault.Drain):
		close(g.fstate.drain)
	case old.Has(fault.Drain) && !next.Has(fault.Drain):
		g.fstate.drain = make(chan struct{})
	}
	addrs := slices.Clone(g.fstate.gossip)
	g.fstate.mu.Unlock()
	if cutsGossip(old) && !cutsGossip(next) && g.catalog != nil && !g.closing.Load() {
		addrs = append(addrs, g.cfg.Gossip.Join...)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if n, err := g.catalog.Join(addrs); err != nil {
				g.log.Warn("rejoin after a fault", "err", err)
			} else {
				g.log.Info("rejoined the federation after a fault", "contacted", n)
			}
		}()
	}
}

// tunnelDrain is the channel an inbound tunnel drains on: the gateway's
// shutdown, or a drain fault. stop ends the goroutine that merges them.
func (g *Gateway) tunnelDrain() (drain <-chan struct{}, stop func()) {
	if !g.faults.Enabled() {
		return g.draining, func() {}
	}
	g.fstate.mu.Lock()
	fd := g.fstate.drain
	g.fstate.mu.Unlock()
	merged, done := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-g.draining:
			close(merged)
		case <-fd:
			close(merged)
		case <-done:
		}
	}()
	return merged, func() { close(done) }
}

// faultsNotReady are the readiness failures of the faults in force.
func (g *Gateway) faultsNotReady() []string {
	r := g.faults.Rules()
	var out []string
	for _, k := range []fault.Kind{fault.Kill, fault.Freeze, fault.Drain} {
		if f := r.First(k); f != nil {
			out = append(out, fmt.Sprintf("fault %q (%s) in force until %s", f.ID, f.Kind, f.Expires.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

// The admin API's fault routes (admin.Faults).

// FaultsEnabled reports whether faults.enabled is set.
func (g *Gateway) FaultsEnabled() bool { return g.faults.Enabled() }

// InjectFault puts a fault in force or renews its lease.
func (g *Gateway) InjectFault(s fault.Spec) (fault.Fault, error) { return g.faults.Inject(s) }

// UndoFault ends a fault at once.
func (g *Gateway) UndoFault(id string) (fault.Fault, error) { return g.faults.Undo(id) }

// Faults lists the faults in force.
func (g *Gateway) Faults() []fault.Fault { return g.faults.List() }

var _ admin.Faults = (*Gateway)(nil)
