package route

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
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

// Selector orders candidates and counts open streams.
type Selector struct {
	cluster  string // this gateway's cluster
	Out      *Outliers
	Failover *FailoverTable
	gauge    *prometheus.GaugeVec // strait_gateway_inflight_streams, may be nil
	float    func() float64       // uniform in [0, 1)

	mu     sync.Mutex
	flight map[FlightKey]int
}

// FlightKey names what open streams are counted against: a local endpoint
// (service empty), or a remote gateway for one service target.
type FlightKey struct {
	Service string
	Addr    string
}

// Metrics are the selector's collectors; any of them may be nil.
type Metrics struct {
	Ejections *prometheus.CounterVec // strait_gateway_ejections_total
	Inflight  *prometheus.GaugeVec   // strait_gateway_inflight_streams
	Ejected   *EjectedCollector      // strait_gateway_ejected
}

// NewSelector returns the selector of a gateway in cluster.
func NewSelector(cluster string, cfg OutlierConfig, m Metrics, clk Clock, log *slog.Logger) *Selector {
	s := &Selector{cluster: cluster, Failover: &FailoverTable{}, float: rand.Float64, flight: map[FlightKey]int{}, gauge: m.Inflight}
	s.Out = NewOutliers(cfg, clk, log, m.Ejections)
	if m.Ejected != nil {
		m.Ejected.src.Store(s.Out)
	}
	return s
}

// Acquire counts one stream to k, in cluster, and returns the function
// that releases it. Release is idempotent.
func (s *Selector) Acquire(k FlightKey, cluster string) func() {
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

func (s *Selector) Inflight(k FlightKey) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flight[k]
}

func RemoteFlight(t wire.Target, c Candidate) FlightKey {
	return FlightKey{Service: t.String(), Addr: c.Addr}
}

// Order returns the candidates the planner allowed, in the Order to dial
// them for one connection. cands are in rank Order; localEjected says
// every local endpoint of t is ejected, which demotes the local cluster
// like an ejected gateway.
func (s *Selector) Order(t wire.Target, cands []Candidate, localEjected bool) []Candidate {
	if len(cands) == 0 {
		return nil
	}
	keys := make([]OutlierKey, len(cands))
	for i, c := range cands {
		if !c.Local {
			keys[i] = GatewayKey(t, c.Addr)
		}
	}
	ejected := make([]bool, len(cands))
	s.Out.Ejected(keys, ejected)
	live := make([]Candidate, 0, len(cands))
	var last []Candidate
	for i, c := range cands {
		if c.Local && localEjected || !c.Local && ejected[i] {
			last = append(last, c)
		} else {
			live = append(live, c)
		}
	}
	for lo := 0; lo < len(live); {
		hi := lo + 1
		for hi < len(live) && live[hi].Rank == live[lo].Rank {
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
func (s *Selector) leadGroup(t wire.Target, g []Candidate) {
	gateways := map[string]int{}
	for _, c := range g {
		gateways[c.Cluster]++
	}
	weight := make([]float64, len(g))
	load := make([]float64, len(g))
	s.mu.Lock()
	for i, c := range g {
		weight[i] = float64(max(c.Healthy, 1)) / float64(gateways[c.Cluster])
		load[i] = float64(s.flight[RemoteFlight(t, c)])
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

// OrderEndpoints orders the dial addresses of a local service port for one
// connection: the two-choice pick among healthy endpoints that are not
// ejected, the other healthy ones, those failing their health check, then
// the ejected ones.
func (s *Selector) OrderEndpoints(addrs []string, down map[string]bool) []string {
	if len(addrs) == 0 {
		return nil
	}
	keys := make([]OutlierKey, len(addrs))
	for i, a := range addrs {
		keys[i] = EndpointKey(a)
	}
	ejected := make([]bool, len(addrs))
	s.Out.Ejected(keys, ejected)
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
			load[i] = float64(s.flight[FlightKey{Addr: a}])
		}
		s.mu.Unlock()
		promote(out, pickTwo(weight, load, s.float))
	}
	out = append(out, sick...)
	return append(out, last...)
}

// GatewayFault reports whether a failed connect through a remote gateway
// counts against it: not when its residency policy refused the flow (that
// says nothing of its health) nor when the connection was given up on
// (ctx cancelled: the client or the gateway is going away). A timeout
// counts: the gateway took the whole time.
func GatewayFault(ctx context.Context, err error) bool {
	var rr *wire.Refusal
	return !(errors.As(err, &rr) && rr.Residency()) && !errors.Is(ctx.Err(), context.Canceled)
}
