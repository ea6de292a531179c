package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// plan orders the places that serve t and asks the residency policy about
// each (route.NewPlan). eng is the policy in force. The service's classes
// come from g.classes, so the policy only looks at what the flow carries.
func (g *Gateway) plan(eng *sovereignty.Engine, t wire.Target, in route.FlowIn) *route.Plan {
	lv := route.LocalView{}
	local := g.local.Load()
	if svc, ok := local.byKey[t.Namespace+"/"+t.Name]; ok {
		_, hasPort := svc.Target(t.Port)
		lv = route.LocalView{Exists: true, HasPort: hasPort, Healthy: true, Labels: svc.Labels}
	}
	snap := g.catalog.Snapshot()
	in.Service = g.classes.outbound(eng, snap, local, lv, t)
	in.Access = &g.access
	return route.NewPlan(route.Self{Cluster: g.cfg.Cluster, Region: g.cfg.Region, Zone: g.cfg.Zone}, lv, snap, eng, t, in,
		g.sel.Failover.Priority(t.Namespace, t.Name))
}

// route is where an outbound connection went.
type destination struct {
	cluster string
	region  string
}

// attempt is one outbound flow on its way to a target: the plan, the
// facts every candidate is told, and what each tried candidate answered.
type attempt struct {
	g        *Gateway
	t        wire.Target
	in       route.FlowIn
	svc      string // t.String(), the metrics label
	p        *route.Plan
	cands    []route.Candidate // p.allowed in the order to try them (selector)
	eng      *sovereignty.Engine
	version  uint64
	facts    []byte
	factsV   wire.Facts // what facts encodes (tracing adds its trace context)
	next     int        // index in cands of the next candidate to open
	last     string     // the cluster that failed last
	nre      *route.NoRouteError
	refusals int
	start    time.Time

	// ctx carries the span of the request or flow (tracing.go); span and
	// stream are the spans of the candidate being tried, nil untraced.
	ctx          context.Context
	span, stream trace.Span
}

// prepare plans a flow to t. A flow the policy refuses outright, or with
// no candidate at all, ends here with a *route.NoRouteError. ctx carries
// the flow's span, if traced: the plan and the attempts are its children.
func (g *Gateway) prepare(ctx context.Context, t wire.Target, in route.FlowIn) (*attempt, error) {
	_, span := g.childSpan(ctx, spanPlan, trace.SpanKindInternal)
	a, err := g.planFlow(t, in)
	endPlan(span, t, a, err)
	if a != nil {
		a.ctx = ctx
	}
	return a, err
}

func (g *Gateway) planFlow(t wire.Target, in route.FlowIn) (*attempt, error) {
	eng, version := g.res.current()
	if eng == nil {
		g.res.audit.Refused("outbound", 503)
		return nil, &route.NoRouteError{Target: t, Known: true, Residency: route.ResidencyUnavailable, Reason: errNoPolicy.Error()}
	}
	p := g.plan(eng, t, in)
	g.res.countPlan(p)
	if nre := p.Refusal(eng); nre != nil {
		if nre.Residency != "" {
			g.res.deny("outbound", in, p, nre, version)
		}
		if nre.Access != "" {
			g.metrics.accessRefused.WithLabelValues("outbound", t.String()).Inc()
			g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindAccess, Decision: sovereignty.DecisionDeny, Direction: "outbound", Entry: in.Entry,
				Flow: &sovereignty.FlowInfo{Service: t.Namespace + "/" + t.Name, Port: t.Port, SourceCluster: g.cfg.Cluster, SourceRegion: g.cfg.Region,
					SourceNamespace: in.Namespace}, Status: 403, Reason: nre.Error(), Policy: g.res.info(eng, version)})
		}
		if len(p.Considered) == 0 && nre.Known {
			for _, c := range g.catalog.Snapshot().Clusters {
				if !c.Reachable && route.Serves(c, t) {
					nre.Reasons = append(nre.Reasons, fmt.Sprintf("%s: gateway %s", c.Cluster, c.State))
				}
			}
		}
		return nil, nre
	}
	g.res.filtered(in, p, version)
	fv := p.Facts(eng, version)
	facts, err := wire.EncodeFacts(fv)
	if err != nil {
		return nil, err
	}
	cands := g.sel.Order(t, p.Allowed, g.localEjected(t))
	if g.cfg.Tunnels.Enabled {
		cands = g.tunnels.Demote(cands)
	}
	return &attempt{g: g, t: t, in: in, svc: t.String(), p: p, cands: cands, eng: eng, version: version,
		facts: facts, factsV: fv, nre: &route.NoRouteError{Target: t, Known: true}, start: time.Now()}, nil
}

// open opens a stream to the next candidate that takes one, in plan
// order. The stream is not answered yet (see wire.ReadAnswer) unless the
// candidate is local: then it is a connection to a local endpoint and
// answered is true. Failing candidates are recorded; an error means none
// is left or ctx ended.
func (a *attempt) open(ctx context.Context) (up net.Conn, c route.Candidate, answered bool, err error) {
	up, c, a.next, err = firstAnswer(ctx, a.cands, a.next, func(ctx context.Context, c route.Candidate) (net.Conn, error) {
		if a.last != "" {
			a.g.metrics.failovers.WithLabelValues(a.svc, a.last).Inc()
		}
		cctx, cancel := context.WithTimeout(ctx, a.g.cfg.Timeouts.Connect)
		defer cancel()
		facts := a.traceAttempt(c)
		if c.Local {
			return a.g.openCandidate(cctx, c, a.t, facts) // dialLocal counts and ejects endpoints
		}
		// The stream counts against the remote gateway while it is open.
		acquire := func() func() { return a.g.sel.Acquire(route.RemoteFlight(a.t, c), c.Cluster) }
		release := acquire()
		up, err := a.g.openCandidate(cctx, c, a.t, facts)
		if err != nil {
			release()
			return nil, err
		}
		return trackConn(up, release, acquire), nil
	}, a.failed)
	if err != nil {
		return nil, route.Candidate{}, false, a.noRoute(ctx)
	}
	return up, c, c.Local, nil
}

// firstAnswer dials cands from index from on, in order, until one answers,
// and gives up when ctx ends; it returns the index after the one that
// answered. It only ever dials what it is given: the planner has already
// removed every cluster the residency policy forbids. onFail, when set,
// sees each failure.
func firstAnswer(ctx context.Context, cands []route.Candidate, from int, dial func(context.Context, route.Candidate) (net.Conn, error), onFail func(route.Candidate, error)) (net.Conn, route.Candidate, int, error) {
	errs := []error{errors.New("no allowed candidate answered")}
	for i := from; i < len(cands); i++ {
		if ctx.Err() != nil {
			break
		}
		c := cands[i]
		conn, err := dial(ctx, c)
		if err == nil {
			return conn, c, i + 1, nil
		}
		if onFail != nil {
			onFail(c, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.Cluster, err))
	}
	return nil, route.Candidate{}, len(cands), errors.Join(errs...)
}

// failed records that c did not take the flow.
func (a *attempt) failed(c route.Candidate, err error) {
	a.endAttempt(err)
	a.last = c.Cluster
	if !c.Local && route.GatewayFault(a.g.ctx, err) {
		a.g.sel.Out.Failure(route.GatewayKey(a.t, c.Addr), a.svc, c.Cluster, false)
	}
	a.g.metrics.dialFailures.WithLabelValues(a.svc, c.Cluster).Inc()
	a.nre.Reasons = append(a.nre.Reasons, fmt.Sprintf("%s: %v", c.Cluster, err))
	var rr *wire.Refusal
	if errors.As(err, &rr) && rr.Residency() {
		a.refusals++
	}
}

// answered records that c took the flow.
func (a *attempt) answered(c route.Candidate) destination {
	a.endAttempt(nil)
	if !c.Local {
		a.g.sel.Out.Success(route.GatewayKey(a.t, c.Addr))
	}
	a.g.metrics.connectSeconds.WithLabelValues(a.svc, c.Cluster).Observe(time.Since(a.start).Seconds())
	return destination{cluster: c.Cluster, region: c.Region}
}

// noRoute is the error once every candidate failed: it says whether the
// residency policy kept the flow from going further.
func (a *attempt) noRoute(ctx context.Context) *route.NoRouteError {
	g, nre := a.g, a.nre
	if ctx.Err() != nil {
		nre.Reasons = append(nre.Reasons, "connect budget exhausted")
	}
	switch denied := a.p.Denied(); {
	case a.refusals == len(a.p.Allowed):
		// Every allowed cluster refused the flow for residency at its end.
		nre.Residency, nre.Reason = route.ResidencyForbidden, "every allowed cluster refused it at its gateway: "+strings.Join(nre.Reasons, "; ")
		nre.Reasons = nil
		g.res.deny("outbound", a.in, a.p, nre, a.version)
	case len(denied) > 0:
		// The policy kept the flow from failing over further.
		nre.Residency = route.ResidencyUnavailable
		nre.Reason = fmt.Sprintf("refusing to send the flow elsewhere: %s", denied[0].Decision.Describe(g.cfg.Region, route.SovCandidate(denied[0].Cand)))
		nre.Rule, nre.Class = denied[0].Decision.Rule.ID, denied[0].Decision.Rule.Class
		g.res.deny("outbound", a.in, a.p, nre, a.version)
	}
	return nre
}

// connectTarget opens a connection that carries bytes to t and has been
// answered, trying every candidate the residency policy allows, in order,
// within the budget. Nothing has been sent upstream when it moves to the
// next candidate, so retrying is always safe. A cluster the policy
// forbids is never dialled: with no allowed cluster left the flow is
// refused.
func (g *Gateway) connectTarget(ctx context.Context, t wire.Target, in route.FlowIn) (net.Conn, destination, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Budget)
	defer cancel()
	a, err := g.prepare(ctx, t, in)
	if err != nil {
		return nil, destination{}, err
	}
	up, _, rt, err := a.connect(ctx)
	return up, rt, err
}

// connect opens an answered stream to the next candidate of a that takes
// one (see connectTarget); a retry after a stream broke calls it again
// once failed has recorded the broken one.
func (a *attempt) connect(ctx context.Context) (net.Conn, route.Candidate, destination, error) {
	for {
		up, c, answered, err := a.open(ctx)
		if err != nil {
			return nil, route.Candidate{}, destination{}, err
		}
		if !answered {
			err = awaitStatus(ctx, up, a.g.cfg.Timeouts.Connect)
		}
		if err == nil {
			return up, c, a.answered(c), nil
		}
		up.Close()
		a.failed(c, err)
	}
}

// awaitStatus reads the answer of a stream within the connect timeout (and
// ctx).
func awaitStatus(ctx context.Context, up net.Conn, timeout time.Duration) error {
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	up.SetReadDeadline(dl)
	err := wire.ReadAnswer(up)
	up.SetReadDeadline(time.Time{})
	if s, ok := unwrap(up).(*tunnel.Stream); ok {
		s.Answered()
	}
	return err
}

// openCandidate opens a stream to t through candidate c and sends its
// header: on a pooled tunnel when the peer offers them, else on an mTLS
// connection of its own. For the local cluster it dials an endpoint.
func (g *Gateway) openCandidate(ctx context.Context, c route.Candidate, t wire.Target, facts []byte) (net.Conn, error) {
	if c.Local {
		local := g.local.Load()
		addrs, _ := local.endpoints(local.byKey[t.Namespace+"/"+t.Name], t.Port)
		return g.dialEndpoints(ctx, t, addrs)
	}
	// Pinned: the gateway at c.Addr must hold c's cluster and region, or
	// the pool refuses it (tunnel.MismatchError, counted and audited by
	// peerMismatch) and the flow moves on to the next candidate.
	peer := tunnel.PeerOf(c)
	var direct *tls.Conn
	if g.cfg.Tunnels.Enabled {
		s, d, err := g.tunnels.Stream(ctx, peer, t)
		switch {
		case err == nil && s != nil:
			if _, err := s.Write(wire.EncodeStreamHeader(t, facts)); err != nil {
				s.Close()
				return nil, fmt.Errorf("open stream to gateway %s: %w", c.Addr, err)
			}
			return s, nil
		case d != nil:
			direct = d
		case !errors.Is(err, tunnel.ErrNoTunnels):
			return nil, err
		}
	}
	if direct == nil {
		var err error
		if direct, err = g.tunnels.Dial(ctx, peer, t); err != nil {
			return nil, err
		}
	}
	if direct.ConnectionState().NegotiatedProtocol == wire.ALPNFlow {
		if dl, ok := ctx.Deadline(); ok {
			direct.SetWriteDeadline(dl)
		}
		if _, err := direct.Write(facts); err != nil {
			direct.Close()
			return nil, fmt.Errorf("send flow facts to gateway %s: %w", c.Addr, err)
		}
		direct.SetWriteDeadline(time.Time{})
	}
	return direct, nil
}

// peerMismatch counts, logs and audits a connection the tunnel pool
// closed because the gateway at a candidate's address presented a
// certificate for another cluster or region than the catalog lists there
// (tunnel.Config.Mismatch). The flow, if one waited, moves on to the next
// candidate: the error is a gateway fault (attempt.failed).
func (g *Gateway) peerMismatch(e *tunnel.MismatchError) {
	g.metrics.peerMismatch.WithLabelValues(e.Peer.Cluster).Inc()
	g.log.Warn("peer gateway presented another identity: connection refused",
		"peer", e.Peer.Cluster, "peer_region", e.Peer.Region, "addr", e.Peer.Addr, "presented", e.Got.String())
	eng, version := g.res.current()
	g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindIdentity, Decision: sovereignty.DecisionDeny, Direction: "outbound",
		Reason:     e.Error(),
		Candidates: []sovereignty.CandidateInfo{{Cluster: e.Peer.Cluster, Region: e.Peer.Region, Decision: sovereignty.DecisionDeny}},
		Policy:     g.res.info(eng, version)})
}

// dialEndpoints dials the local endpoints addrs of t until one answers
// (dialLocal: selection, stream counts, outlier detection). Closing the
// connection releases its stream count.
func (g *Gateway) dialEndpoints(ctx context.Context, t wire.Target, addrs []string) (net.Conn, error) {
	return g.dialLocal(ctx, t, addrs)
}
