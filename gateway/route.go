package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/straitmesh/strait/federation"
	"github.com/straitmesh/strait/sovereignty"
)

// NoRouteError says why a connection to a target could not be made. It
// lists every candidate tried and why it failed.
type NoRouteError struct {
	Target Target
	// Known is false when no cluster, reachable or not, exports the service.
	Known   bool
	Reasons []string
	// Residency is set when the residency policy shaped the outcome:
	// ResidencyForbidden when it allows none of the clusters that export
	// the service, ResidencyUnavailable when it allows some but none of
	// them could take the flow (it is then never sent elsewhere).
	Residency string
	// Reason, Rule and Class say which policy rule decided, for people
	// and the audit trail.
	Reason, Rule, Class string
}

// Residency outcomes of a NoRouteError.
const (
	ResidencyForbidden   = "forbidden"
	ResidencyUnavailable = "unavailable"
)

func (e *NoRouteError) Error() string {
	switch {
	case !e.Known:
		return fmt.Sprintf("no cluster exports %s", e.Target)
	case e.Residency == ResidencyForbidden:
		return fmt.Sprintf("residency: %s refused: %s", e.Target, e.Reason)
	case e.Residency == ResidencyUnavailable:
		msg := fmt.Sprintf("residency: no allowed cluster can take %s: %s", e.Target, e.Reason)
		if len(e.Reasons) > 0 {
			msg += "; tried: " + strings.Join(e.Reasons, "; ")
		}
		return msg
	case len(e.Reasons) == 0:
		return fmt.Sprintf("no reachable cluster has a healthy endpoint of %s", e.Target)
	}
	return fmt.Sprintf("no candidate for %s answered: %s", e.Target, strings.Join(e.Reasons, "; "))
}

// Status is the HTTP status a proxy client gets for e: 404 when no
// cluster exports the service, 403 when residency allows none, else 503.
func (e *NoRouteError) Status() int {
	switch {
	case !e.Known:
		return 404
	case e.Residency == ResidencyForbidden:
		return 403
	}
	return 503
}

// candidate is one place a connection to a target can go.
type candidate struct {
	cluster string
	region  string
	local   bool   // an endpoint in our own cluster, dialled directly
	addr    string // remote gateway data address
	rank    int    // locality rank (plan.go); the selector balances within one
	healthy int    // healthy endpoints of the service behind a remote gateway
}

// plan orders the places that serve t and asks the residency policy about
// each (planRoute). eng is the policy in force.
func (g *Gateway) plan(eng *sovereignty.Engine, t Target, in flowIn) *routePlan {
	lv := localView{}
	if svc, ok := g.local.Load().byKey[t.Namespace+"/"+t.Name]; ok {
		_, hasPort := svc.Target(t.Port)
		lv = localView{exists: true, hasPort: hasPort, healthy: true, labels: svc.Labels}
	}
	return planRoute(selfInfo{cluster: g.cfg.Cluster, region: g.cfg.Region, zone: g.cfg.Zone}, lv, g.catalog.Snapshot(), eng, t, in,
		g.sel.failover.priority(t.Namespace, t.Name))
}

// route is where an outbound connection went.
type route struct {
	cluster string
	region  string
}

// connectTarget opens a connection that carries bytes to t, trying every
// candidate the residency policy allows, in order, within the budget.
// Nothing has been sent upstream when it moves to the next candidate, so
// retrying is always safe. A cluster the policy forbids is never dialled:
// with no allowed cluster left the flow is refused.
func (g *Gateway) connectTarget(ctx context.Context, t Target, in flowIn) (net.Conn, route, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Budget)
	defer cancel()
	eng, version := g.res.current()
	if eng == nil {
		g.res.audit.Refused("outbound", 503)
		return nil, route{}, &NoRouteError{Target: t, Known: true, Residency: ResidencyUnavailable, Reason: errNoPolicy.Error()}
	}
	p := g.plan(eng, t, in)
	g.res.countPlan(p)
	if nre := p.refusal(eng); nre != nil {
		if nre.Residency != "" {
			g.res.deny("outbound", in, p, nre, version)
		}
		if len(p.considered) == 0 && nre.Known {
			for _, c := range g.catalog.Snapshot().Clusters {
				if !c.Reachable && serves(c, t) {
					nre.Reasons = append(nre.Reasons, fmt.Sprintf("%s: gateway %s", c.Cluster, c.State))
				}
			}
		}
		return nil, route{}, nre
	}
	g.res.filtered(in, p, version)
	facts, ferr := encodeFacts(p.facts(eng, version))
	if ferr != nil {
		return nil, route{}, ferr
	}
	nre := &NoRouteError{Target: t, Known: true}
	refusals, attempts := 0, 0
	conn, c, err := firstAnswer(ctx, g.sel.order(t, p.allowed, g.localEjected(t)), func(ctx context.Context, c candidate) (net.Conn, error) {
		if attempts++; attempts > 1 {
			g.metrics.failovers.WithLabelValues(t.String()).Inc()
		}
		return g.dialCounted(ctx, c, t, facts)
	}, func(c candidate, err error) {
		g.metrics.dialFailures.WithLabelValues(t.String(), c.cluster).Inc()
		nre.Reasons = append(nre.Reasons, fmt.Sprintf("%s: %v", c.cluster, err))
		var rr *remoteRefusal
		if errors.As(err, &rr) && rr.residency() {
			refusals++
		}
	})
	if err == nil {
		return conn, route{cluster: c.cluster, region: c.region}, nil
	}
	if ctx.Err() != nil {
		nre.Reasons = append(nre.Reasons, "connect budget exhausted")
	}
	switch denied := p.denied(); {
	case refusals == len(p.allowed):
		// Every allowed cluster refused the flow for residency at its end.
		nre.Residency, nre.Reason = ResidencyForbidden, "every allowed cluster refused it at its gateway: "+strings.Join(nre.Reasons, "; ")
		nre.Reasons = nil
		g.res.deny("outbound", in, p, nre, version)
	case len(denied) > 0:
		// The policy kept the flow from failing over further.
		nre.Residency = ResidencyUnavailable
		nre.Reason = fmt.Sprintf("refusing to send the flow elsewhere: %s", denied[0].decision.Describe(g.cfg.Region, sovCand(denied[0].cand)))
		nre.Rule, nre.Class = denied[0].decision.Rule.ID, denied[0].decision.Rule.Class
		g.res.deny("outbound", in, p, nre, version)
	}
	return nil, route{}, nre
}

// firstAnswer dials cands in order until one answers, and gives up when
// ctx ends. It only ever dials what it is given: the planner has already
// removed every cluster the residency policy forbids. onFail, when set,
// sees each failure.
func firstAnswer(ctx context.Context, cands []candidate, dial func(context.Context, candidate) (net.Conn, error), onFail func(candidate, error)) (net.Conn, candidate, error) {
	errs := []error{errors.New("no allowed candidate answered")}
	for _, c := range cands {
		conn, err := dial(ctx, c)
		if err == nil {
			return conn, c, nil
		}
		if onFail != nil {
			onFail(c, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.cluster, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, candidate{}, errors.Join(errs...)
}

// serves reports whether c exports t's service on t's port (binary search
// in the view's sorted services: this runs for every new connection).
func serves(c *federation.ClusterView, t Target) bool {
	s, ok := c.Service(t.Namespace, t.Name)
	return ok && s.HasPort(t.Port)
}

func (g *Gateway) dialCandidate(ctx context.Context, c candidate, t Target, facts []byte) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Connect)
	defer cancel()
	if c.local {
		local := g.local.Load()
		addrs, _ := local.endpoints(local.byKey[t.Namespace+"/"+t.Name], t.Port)
		return g.dialEndpoints(ctx, t, addrs)
	}
	start := time.Now()
	raw, err := g.dial(ctx, c.addr)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", c.addr, err)
	}
	tcfg := g.id.ClientConfig(t.SNI())
	tcfg.NextProtos = []string{alpnFlow}
	tc := tls.Client(raw, tcfg)
	if dl, ok := ctx.Deadline(); ok {
		tc.SetDeadline(dl)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mTLS handshake with gateway %s: %w", c.addr, err)
	}
	if tc.ConnectionState().NegotiatedProtocol == alpnFlow {
		if _, err := tc.Write(facts); err != nil {
			tc.Close()
			return nil, fmt.Errorf("send flow facts to gateway %s: %w", c.addr, err)
		}
	}
	if err := readStatus(tc); err != nil {
		tc.Close()
		return nil, fmt.Errorf("gateway %s: %w", c.addr, err)
	}
	tc.SetDeadline(time.Time{})
	g.metrics.connectSeconds.WithLabelValues(c.cluster).Observe(time.Since(start).Seconds())
	return tc, nil
}

// dialEndpoints dials the local endpoints addrs of t until one answers
// (dialLocal: selection, stream counts, outlier detection). Closing the
// connection releases its stream count.
func (g *Gateway) dialEndpoints(ctx context.Context, t Target, addrs []string) (net.Conn, error) {
	return g.dialLocal(ctx, t, addrs)
}

// The inbound gateway answers every accepted stream with one status line
// before any payload: "OK\n", or "ERR <reason>\n" and close. It lets the
// outbound side fail over before it has sent a byte.
const maxStatusLine = 512

func writeStatus(w io.Writer, err error) error {
	line := "OK\n"
	if err != nil {
		line = "ERR " + strings.ReplaceAll(err.Error(), "\n", " ")
		if len(line) > maxStatusLine-1 {
			line = line[:maxStatusLine-1]
		}
		line += "\n"
	}
	_, werr := io.WriteString(w, line)
	return werr
}

// readStatus reads the status line one byte at a time so that no payload
// byte sent right after it is consumed.
func readStatus(r io.Reader) error {
	var buf [maxStatusLine]byte
	for n := 0; n < len(buf); n++ {
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("closed the stream before answering")
			}
			return fmt.Errorf("read answer: %w", err)
		}
		if buf[n] == '\n' {
			line := string(buf[:n])
			if line == "OK" {
				return nil
			}
			if reason, ok := strings.CutPrefix(line, "ERR "); ok {
				return &remoteRefusal{reason}
			}
			return fmt.Errorf("unexpected answer %q", line)
		}
	}
	return errors.New("answer longer than 512 bytes")
}

// remoteRefusal is an "ERR <reason>" answer from another gateway.
type remoteRefusal struct{ reason string }

func (e *remoteRefusal) Error() string { return e.reason }

// residency reports whether the remote gateway refused for residency.
func (e *remoteRefusal) residency() bool { return strings.HasPrefix(e.reason, residencyPrefix) }

// residencyPrefix starts every residency refusal an inbound gateway sends.
const residencyPrefix = "residency: "
