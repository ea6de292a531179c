package gateway

import (
	"fmt"
	"net"
	"time"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/sovereignty"
)

// listenControl binds the control API listener, before the catalog starts
// so that the gateway's gossip metadata can carry its address.
func (g *Gateway) listenControl() (advertised string, err error) {
	cfg := g.cfg
	if g.controlLn, err = g.listenIn("control", cfg.Listen.Control, cfg.Limits.Listeners.Control, true); err != nil {
		return "", fmt.Errorf("listen control on %s: %w", cfg.Listen.Control, err)
	}
	raftAddr := cfg.State.Advertise
	if raftAddr == "" {
		raftAddr = cfg.State.Bind
	}
	return cfg.ControlAdvertise(g.controlLn.Addr().String(), raftAddr), nil
}

// startState opens the routing state, serves its control API on the
// listener listenControl bound and follows its failover priorities, its
// trust and revocation records (trust.go) and, unless another policy
// source was given, its residency policy.
func (g *Gateway) startState() error {
	cfg := g.cfg
	ctlAddr := g.controlAdvertise
	var err error
	g.state, err = state.Open(cfg.State, state.Options{
		Name: g.catalog.Name(), TrustDomain: cfg.TrustDomain, Cluster: cfg.Cluster, Region: cfg.Region,
		ControlAddr: ctlAddr, Identity: g.id, Transport: g.opts.StateTransport, Validator: g.opts.StateValidator,
		Logger: g.log, Registry: g.reg,
		OnApproval: func(e state.ApprovalEvent) {
			g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindApproval, Decision: e.Step, Direction: "control",
				Entry: e.Kind + "/" + e.Key, Caller: e.By, Policy: sovereignty.PolicyInfo{Name: e.Key, Version: e.Index, Digest: e.Digest},
				Reason: fmt.Sprintf("%d of %d approvals", e.Count, e.Needed)})
		},
		OnDenied: func(d state.Denial) {
			g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindAccess, Decision: sovereignty.DecisionDeny, Direction: "control",
				Entry: d.RPC, Rule: d.Rule, Reason: d.Reason, Caller: d.Caller})
		},
		// The budget's timer closes (and counts) a late handshake at
		// limits.handshakeTimeout; the stream layer's deadline is a backstop.
		RaftListener: func(ln net.Listener) net.Listener {
			return g.budget("raft", g.faults.Listen(ln), cfg.Limits.Listeners.Raft, true)
		},
		HandshakeTimeout: cfg.Limits.HandshakeTimeout + time.Second,
		RaftDial:         g.raftDial(),
	})
	if err != nil {
		return err
	}
	g.control = state.NewControlServer(g.state, g.id)
	g.goServe("control", func() error { return g.control.Serve(g.controlLn) })
	g.watchRoutes(g.ctx, &g.wg, g.state)
	g.followTrust()
	if g.opts.Policy == nil {
		g.res.useState(g.state, cfg.Residency.StatePolicy)
	}
	return nil
}

// RoutingState returns the routing state the gateway routes on, or nil
// when the routing state is not enabled. It never blocks.
func (g *Gateway) RoutingState() *state.View {
	if g.state == nil {
		return nil
	}
	return g.state.View()
}

// State returns the gateway's routing-state replica, or nil.
func (g *Gateway) State() *state.Store { return g.state }

// ControlAddr returns the bound control API address, or "" when disabled.
func (g *Gateway) ControlAddr() string {
	if g.controlLn == nil {
		return ""
	}
	return g.controlLn.Addr().String()
}

func (g *Gateway) stateStatus() *admin.StateStatus {
	if g.state == nil {
		return nil
	}
	st := &admin.StateStatus{Health: g.state.Health(), Policies: []admin.PolicyStatus{}}
	for _, r := range g.state.View().List(state.KindPolicy) {
		st.Policies = append(st.Policies, admin.PolicyStatus{Name: r.Key, Index: r.Index})
	}
	return st
}

// Warnings says why the routing state may be stale; the gateway
// still routes on it (static stability), so these do not fail /readyz.
func (g *Gateway) Warnings() []string {
	if g.state == nil {
		return nil
	}
	h := g.state.Health()
	if !h.Stale {
		return nil
	}
	since := "start"
	if !h.StaleSince.IsZero() {
		since = h.StaleSince.UTC().Format(time.RFC3339)
	}
	return []string{fmt.Sprintf("routing state may be stale since %s: no contact with a leader (routing on index %d)", since, h.Index)}
}
