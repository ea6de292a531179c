package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/gateway/wire"
)

// Endpoint selection. The planner (plan.go) decides where a flow may go
// and in which locality rank; the selector decides, per connection, who
// goes first within a rank and what is tried last:
//
//   - Within one rank (several remote clusters in the same zone, the same
//     region, or among the clusters no failover priority names), weighted
//     least-request with two random choices: two candidates are drawn with
//     probability proportional to their weight (the service's healthy
//     endpoints in that cluster, shared by the cluster's gateways), and the
//     one with fewer streams of the service open per unit of weight goes
//     first (a tie: the first drawn). Idle, traffic splits by weight;
//     loaded, it moves to whoever has the least per endpoint. The rest of
//     the rank follows in the planner's order, for failover.
//   - Local endpoints: the same among healthy endpoints, each of weight 1,
//     counting the streams open to each endpoint; endpoints failing their
//     health check follow.
//   - Ejected endpoints and gateways (outlier.go) go after everything else,
//     as a last resort: ejection reorders, it never removes.
//
// Nothing here adds a candidate: the selector only permutes what the
// planner allowed.

// selector orders candidates and counts open streams.
type selector struct {
	cluster  string // this gateway's cluster
	out      *outliers
	failover *failoverTable
	gauge    *prometheus.GaugeVec // strait_gateway_inflight_streams, may be nil
	float    func() float64       // uniform in [0, 1)

	mu     sync.Mutex
	flight map[flightKey]int
}

// flightKey names what open streams are counted against: a local endpoint
// (service empty), or a remote gateway for one service target.
type flightKey struct {
	service string
	addr    string
}

func newSelector(cluster string, cfg OutlierConfig, m *metrics, clk clock, log *slog.Logger) *selector {
	s := &selector{cluster: cluster, failover: &failoverTable{}, float: rand.Float64, flight: map[flightKey]int{}}
	var count *prometheus.CounterVec
	if m != nil {
		count, s.gauge = m.ejections, m.inflight
	}
	s.out = newOutliers(cfg, clk, log, count)
	if m != nil {
		m.ejected.src.Store(s.out)
	}
	return s
}

// acquire counts one stream to k, in cluster, and returns the function
// that releases it. Release is idempotent.
func (s *selector) acquire(k flightKey, cluster string) func() {
	s.mu.Lock()
	s.flight[k]++
	s.mu.Unlock()
	if s.gauge != nil {
		s.gauge.WithLabelValues(cluster).Inc()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.flight[k]--; s.flight[k] <= 0 {
				delete(s.flight, k)
			}
			s.mu.Unlock()
			if s.gauge != nil {
				s.gauge.WithLabelValues(cluster).Dec()
			}
		})
	}
}

func (s *selector) inflight(k flightKey) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flight[k]
}

func remoteFlight(t wire.Target, c candidate) flightKey {
	return flightKey{service: t.String(), addr: c.addr}
}

// order returns the candidates the planner allowed, in the order to dial
// them for one connection. cands are in rank order; localEjected says
// every local endpoint of t is ejected, which demotes the local cluster
// like an ejected gateway.
func (s *selector) order(t wire.Target, cands []candidate, localEjected bool) []candidate {
	if len(cands) == 0 {
		return nil
	}
	keys := make([]outlierKey, len(cands))
	for i, c := range cands {
		if !c.local {
			keys[i] = gatewayKey(t, c.addr)
		}
	}
	ejected := make([]bool, len(cands))
	s.out.ejected(keys, ejected)
	live := make([]candidate, 0, len(cands))
	var last []candidate
	for i, c := range cands {
		if c.local && localEjected || !c.local && ejected[i] {
			last = append(last, c)
		} else {
			live = append(live, c)
		}
	}
	for lo := 0; lo < len(live); {
		hi := lo + 1
		for hi < len(live) && live[hi].rank == live[lo].rank {
			hi++
		}
		if hi-lo > 1 {
			s.leadGroup(t, live[lo:hi])
		}
		lo = hi
	}
	return append(live, last...)
}

// leadGroup moves the two-choice pick of one rank to its front, keeping the
// order of the others.
func (s *selector) leadGroup(t wire.Target, g []candidate) {
	gateways := map[string]int{}
	for _, c := range g {
		gateways[c.cluster]++
	}
	weight := make([]float64, len(g))
	load := make([]float64, len(g))
	s.mu.Lock()
	for i, c := range g {
		weight[i] = float64(max(c.healthy, 1)) / float64(gateways[c.cluster])
		load[i] = float64(s.flight[remoteFlight(t, c)])
	}
	s.mu.Unlock()
	promote(g, pickTwo(weight, load, s.float))
}

// promote moves s[i] to the front, shifting s[:i] back by one.
func promote[T any](s []T, i int) {
	if i <= 0 {
		return
	}
	v := s[i]
	copy(s[1:i+1], s[:i])
	s[0] = v
}

// pickTwo is weighted least-request with two random choices: it draws two
// distinct indexes with probability proportional to weight and returns the
// one with the lower load per weight, the first drawn on a tie. Weights
// must be positive.
func pickTwo(weight, load []float64, float func() float64) int {
	n := len(weight)
	if n < 2 {
		return 0
	}
	total := 0.0
	for _, w := range weight {
		total += w
	}
	draw := func(skip int, total float64) int {
		x := float() * total
		pick := -1
		for i, w := range weight {
			if i == skip {
				continue
			}
			pick = i
			if x < w {
				break
			}
			x -= w
		}
		return pick
	}
	a := draw(-1, total)
	b := draw(a, total-weight[a])
	if load[b]*weight[a] < load[a]*weight[b] {
		return b
	}
	return a
}

// orderEndpoints orders the dial addresses of a local service port for one
// connection: the two-choice pick among healthy endpoints that are not
// ejected, the other healthy ones, those failing their health check, then
// the ejected ones.
func (s *selector) orderEndpoints(addrs []string, down map[string]bool) []string {
	if len(addrs) == 0 {
		return nil
	}
	keys := make([]outlierKey, len(addrs))
	for i, a := range addrs {
		keys[i] = endpointKey(a)
	}
	ejected := make([]bool, len(addrs))
	s.out.ejected(keys, ejected)
	out := make([]string, 0, len(addrs))
	var sick, last []string
	for i, a := range addrs {
		switch {
		case ejected[i]:
			last = append(last, a)
		case down[a]:
			sick = append(sick, a)
		default:
			out = append(out, a)
		}
	}
	if len(out) > 1 {
		weight := make([]float64, len(out))
		load := make([]float64, len(out))
		s.mu.Lock()
		for i, a := range out {
			weight[i] = 1
			load[i] = float64(s.flight[flightKey{addr: a}])
		}
		s.mu.Unlock()
		promote(out, pickTwo(weight, load, s.float))
	}
	out = append(out, sick...)
	return append(out, last...)
}

// localEjected reports whether every local endpoint of t is ejected.
func (g *Gateway) localEjected(t wire.Target) bool {
	svc, ok := g.local.Load().byKey[t.Namespace+"/"+t.Name]
	if !ok {
		return false
	}
	addrs, _ := svc.Target(t.Port)
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !g.sel.out.isEjected(endpointKey(a)) {
			return false
		}
	}
	return true
}

// dialLocal dials the local endpoints addrs of t, in the selector's order,
// until one answers. The connection it returns releases its stream count
// when closed.
func (g *Gateway) dialLocal(ctx context.Context, t wire.Target, addrs []string) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no local endpoints")
	}
	var d net.Dialer
	var errs []string
	svc := t.String()
	for _, a := range g.sel.orderEndpoints(addrs, g.local.Load().down) {
		if ctx.Err() != nil {
			break
		}
		release := g.sel.acquire(flightKey{addr: a}, g.cfg.Cluster)
		c, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			g.sel.out.success(endpointKey(a))
			return trackConn(c, release), nil
		}
		release()
		if !errors.Is(ctx.Err(), context.Canceled) {
			g.sel.out.failure(endpointKey(a), svc, g.cfg.Cluster, true)
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no endpoint dialled: %w", ctx.Err())
	}
	return nil, fmt.Errorf("no endpoint answered: %s", strings.Join(errs, "; "))
}

// gatewayFault reports whether a failed connect through a remote gateway
// counts against it: not when its residency policy refused the flow (that
// says nothing of its health) nor when the connection was given up on
// (ctx cancelled: the client or the gateway is going away). A timeout
// counts: the gateway took the whole time.
func gatewayFault(ctx context.Context, err error) bool {
	var rr *wire.Refusal
	return !(errors.As(err, &rr) && rr.Residency()) && !errors.Is(ctx.Err(), context.Canceled)
}

// trackedConn releases its stream count once, when it is closed.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func trackConn(c net.Conn, release func()) net.Conn { return &trackedConn{Conn: c, release: release} }

// unwrapConn is the connection beneath, for the zero-copy path of splice.
func (c *trackedConn) unwrapConn() net.Conn { return c.Conn }

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes the connection when the one beneath can.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom and WriteTo keep the zero-copy paths of the connection beneath
// for splice.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *trackedConn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}
