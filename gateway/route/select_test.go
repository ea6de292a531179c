package route

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/internal/fakeclock"
	"github.com/straitmesh/strait/sovereignty"
)

var discard = slog.New(slog.DiscardHandler)

func defaultOutlier() OutlierConfig { return DefaultOutlierConfig() }

// testSelector is a selector with its own metrics, a fake clock and a
// seeded random source.
func testSelector(t *testing.T) (*Selector, *fakeclock.Clock, Metrics) {
	t.Helper()
	clk := fakeclock.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	m := Metrics{
		Ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_gateway_ejections_total"}, []string{"service", "destination_cluster"}),
		Inflight:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_gateway_inflight_streams"}, []string{"destination_cluster"}),
		Ejected:   NewEjectedCollector(),
	}
	s := NewSelector("a", defaultOutlier(), m, clk, discard)
	s.float = rand.New(rand.NewPCG(1, 2)).Float64
	return s, clk, m
}

const selectPolicy = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: p}
spec:
  regionGroups: {eu: [eu-west, eu-central]}
  classes:
    - name: pii-eu
      allowedRegions: [eu]
      match: {services: [{labels: {data-class: pii-eu}}]}
`

// exporters is a catalog in which each cluster (name:region:zone) exports
// demo/<svc> on port 80 with healthy endpoints.
func exporters(svc string, labels map[string]string, healthy int, clusters ...string) *catalog.Snapshot {
	snap := &catalog.Snapshot{Local: "self"}
	for _, c := range clusters {
		parts := strings.Split(c, ":")
		v := &catalog.ClusterView{Entry: catalog.Entry{Node: parts[0], Cluster: parts[0], Region: parts[1], Zone: parts[2], Gateway: parts[0] + ":15443",
			Services: []catalog.Service{{Namespace: "demo", Name: svc, Ports: []catalog.Port{{Port: 80}}, Labels: labels, Healthy: healthy, Total: healthy}}},
			Reachable: true, State: "alive"}
		snap.Clusters = append(snap.Clusters, v)
	}
	slices.SortFunc(snap.Clusters, func(a, b *catalog.ClusterView) int { return strings.Compare(a.Cluster, b.Cluster) })
	return snap
}

func names(cs []Candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Cluster)
	}
	return strings.Join(out, ",")
}

// TestPlanOrdersFailoverAfterLocality: the failover priority orders the
// clusters beyond the local region, in the order listed, before the rest;
// locality ranks stay first whether or not the list names a cluster; the
// policy still removes every forbidden cluster, listed or not.
func TestPlanOrdersFailoverAfterLocality(t *testing.T) {
	self := Self{Cluster: "a", Region: "eu-west", Zone: "eu-west-1a"}
	snap := exporters("api", nil, 2,
		"b:eu-west:eu-west-1a", "c:eu-west:eu-west-1b", "d:eu-central:eu-central-1a",
		"e:us-east:us-east-1a", "f:ap-south:ap-south-1a", "g:us-west:us-west-1a")
	tgt := wire.Target{Namespace: "demo", Name: "api", Port: 80}
	local := LocalView{Exists: true, HasPort: true, Healthy: true}
	allow := sovereignty.AllowAll()
	for _, tc := range []struct {
		prio []string
		want string
	}{
		{nil, "a,b,c,d,e,f,g"},
		{[]string{"f", "d"}, "a,b,c,f,d,e,g"},
		// c (same region) and b (same zone) keep their locality ranks;
		// unknown and non-exporting names change nothing.
		{[]string{"g", "c", "nope", "b", "e"}, "a,b,c,g,e,d,f"},
	} {
		p := NewPlan(self, local, snap, allow, tgt, FlowIn{Entry: "test"}, tc.prio)
		if got := names(p.Allowed); got != tc.want {
			t.Errorf("priority %v: order %s, want %s", tc.prio, got, tc.want)
		}
	}
	p := NewPlan(self, local, snap, allow, tgt, FlowIn{Entry: "test"}, []string{"f", "d"})
	var ranks []int
	for _, c := range p.Allowed {
		ranks = append(ranks, c.Rank)
	}
	if want := []int{rankLocal, rankZone, rankRegion, rankPriority, rankPriority + 1, rankPriority + 2, rankPriority + 2}; !slices.Equal(ranks, want) {
		t.Errorf("ranks %v, want %v", ranks, want)
	}

	// A residency class keeps the flow in the EU: listing us-east first
	// does not make it a candidate.
	eng, err := sovereignty.Compile("p.yaml", []byte(selectPolicy))
	if err != nil {
		t.Fatal(err)
	}
	pii := exporters("ledger", map[string]string{"data-class": "pii-eu"}, 1, "d:eu-central:eu-central-1a", "e:us-east:us-east-1a", "f:eu-central:eu-central-1b")
	lt := wire.Target{Namespace: "demo", Name: "ledger", Port: 80}
	p = NewPlan(self, LocalView{}, pii, eng, lt, FlowIn{Entry: "test"}, []string{"e", "f"})
	if got := names(p.Allowed); got != "f,d" {
		t.Errorf("pii-eu with priority [e f]: allowed %s, want f,d", got)
	}
	if d := p.Denied(); len(d) != 1 || d[0].Cand.Cluster != "e" {
		t.Errorf("denied %+v, want e", d)
	}
	p = NewPlan(self, LocalView{}, pii, eng, lt, FlowIn{Entry: "test"}, nil)
	if got := names(p.Allowed); got != "d,f" {
		t.Errorf("pii-eu without priority: allowed %s, want d,f", got)
	}
}

func cand(cluster string, rank, healthy int) Candidate {
	return Candidate{Cluster: cluster, Region: "r", Addr: cluster + ":15443", Rank: rank, Healthy: healthy}
}

// TestPickTwoFollowsWeights: idle candidates are chosen in proportion to
// their weights.
func TestPickTwoFollowsWeights(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, weights := range [][]float64{{1, 3}, {1, 2, 3, 4}, {5, 5, 5}} {
		const n = 40000
		counts := make([]int, len(weights))
		load := make([]float64, len(weights))
		for range n {
			counts[pickTwo(weights, load, r.Float64)]++
		}
		total := 0.0
		for _, w := range weights {
			total += w
		}
		for i, w := range weights {
			got, want := float64(counts[i])/n, w/total
			if got < want-0.015 || got > want+0.015 {
				t.Errorf("weights %v: index %d chosen %.3f of the time, want %.3f", weights, i, got, want)
			}
		}
	}
}

// TestPickTwoPrefersLeastRequest: a loaded candidate loses every draw
// against an idle one; loads are compared per unit of weight.
func TestPickTwoPrefersLeastRequest(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 20000
	count := func(weight, load []float64) []int {
		c := make([]int, len(weight))
		for range n {
			c[pickTwo(weight, load, r.Float64)]++
		}
		return c
	}
	if c := count([]float64{1, 1}, []float64{5, 0}); c[0] != 0 {
		t.Errorf("two equal candidates, one with 5 streams open: it was chosen %d times of %d", c[0], n)
	}
	// Three: the idle one is chosen whenever it is drawn, 2/3 of the time.
	if c := count([]float64{1, 1, 1}, []float64{4, 0, 4}); float64(c[1])/n < 0.64 || float64(c[1])/n > 0.69 {
		t.Errorf("idle among three chosen %.3f of the time, want 2/3", float64(c[1])/n)
	}
	// Weight 3 with 3 streams is as loaded as weight 1 with 1: back to the
	// weights.
	if c := count([]float64{1, 3}, []float64{1, 3}); float64(c[1])/n < 0.72 || float64(c[1])/n > 0.78 {
		t.Errorf("equal load per weight: heavy one chosen %.3f of the time, want 0.75", float64(c[1])/n)
	}
	// Weight 3 with 4 streams is more loaded than weight 1 with 1.
	if c := count([]float64{1, 3}, []float64{1, 4}); c[1] != 0 {
		t.Errorf("heavier load per weight chosen %d times", c[1])
	}
}

// TestSelectorOrder: within one rank the pick goes first and the others
// keep their order; ranks never mix; ejected gateways go last; weights
// come from healthy endpoints shared by a cluster's gateways; open
// streams steer the pick.
func TestSelectorOrder(t *testing.T) {
	s, clk, _ := testSelector(t)
	tgt := wire.Target{Namespace: "demo", Name: "api", Port: 80}
	local := Candidate{Cluster: "a", Region: "r", Local: true, Rank: rankLocal}
	cands := []Candidate{local, cand("b", 1, 1), cand("c", 3, 1), cand("d", 3, 3), cand("e", 4, 1)}

	first := map[string]int{}
	const n = 8000
	for range n {
		o := s.Order(tgt, cands, false)
		if o[0].Cluster != "a" || o[1].Cluster != "b" || o[4].Cluster != "e" {
			t.Fatalf("order %s: ranks mixed", names(o))
		}
		if got := names(o[2:4]); got != "c,d" && got != "d,c" {
			t.Fatalf("order %s: rank 3 is not c and d", names(o))
		}
		first[o[2].Cluster]++
	}
	if got := float64(first["d"]) / n; got < 0.72 || got > 0.78 {
		t.Errorf("d (3 healthy) led its rank %.3f of the time against c (1 healthy), want 0.75", got)
	}

	// The two gateways of cluster d share its weight: c leads half the time.
	ha := []Candidate{cand("c", 3, 2), {Cluster: "d", Region: "r", Addr: "d1:15443", Rank: 3, Healthy: 2}, {Cluster: "d", Region: "r", Addr: "d2:15443", Rank: 3, Healthy: 2}}
	clear(first)
	for range n {
		first[s.Order(tgt, ha, false)[0].Addr]++
	}
	if got := float64(first["c:15443"]) / n; got < 0.46 || got > 0.54 {
		t.Errorf("c led against an HA pair with the same endpoints %.3f of the time, want 0.5", got)
	}

	// Streams open to d make c lead.
	releases := []func(){}
	for range 4 {
		releases = append(releases, s.Acquire(RemoteFlight(tgt, cands[3]), "d"))
	}
	for range 100 {
		if o := s.Order(tgt, cands, false); o[2].Cluster != "c" {
			t.Fatalf("d has 4 streams per 3 endpoints, c none: order %s", names(o))
		}
	}
	for _, r := range releases {
		r()
		r() // idempotent
	}
	if got := s.Inflight(RemoteFlight(tgt, cands[3])); got != 0 {
		t.Fatalf("after release: %d in flight", got)
	}

	// Ejected gateways and an ejected local cluster go last, in order.
	for range 3 {
		s.Out.Failure(GatewayKey(tgt, "c:15443"), tgt.String(), "c", false)
		s.Out.Failure(GatewayKey(tgt, "b:15443"), tgt.String(), "b", false)
	}
	for range 50 {
		if got := names(s.Order(tgt, cands, true)); got != "d,e,a,b,c" {
			t.Fatalf("with a, b and c ejected: order %s, want d,e,a,b,c", got)
		}
	}
	// Another service's gateways are not ejected.
	other := wire.Target{Namespace: "demo", Name: "other", Port: 80}
	if got := names(s.Order(other, cands[:3], false)); got != "a,b,c" {
		t.Errorf("other service: order %s", got)
	}
	clk.Add(5 * time.Second)
	if got := names(s.Order(tgt, cands[:3], false)); got != "a,b,c" {
		t.Errorf("after the ejection: order %s, want a,b,c", got)
	}
}

// TestOutlierBackoff: three failures in a row eject for the base time; a
// failure after an ejection ends ejects again for twice as long, up to the
// maximum; one success forgets everything.
func TestOutlierBackoff(t *testing.T) {
	s, clk, m := testSelector(t)
	o := s.Out
	k := EndpointKey("10.0.0.1:80")
	fail := func() bool { return o.Failure(k, "demo/api:80", "a", true) }
	for i := range 2 {
		if fail() {
			t.Fatalf("ejected after %d failures", i+1)
		}
	}
	if o.IsEjected(k) {
		t.Fatal("ejected after 2 failures")
	}
	if !fail() || !o.IsEjected(k) {
		t.Fatal("not ejected after 3 failures")
	}
	// Failures while ejected change nothing.
	if fail() {
		t.Fatal("ejected again while ejected")
	}
	clk.Add(5*time.Second - time.Millisecond)
	if !o.IsEjected(k) {
		t.Fatal("ejection ended before 5s")
	}
	clk.Add(time.Millisecond)
	if o.IsEjected(k) {
		t.Fatal("still ejected after 5s")
	}
	// Probation: one failure ejects again, doubling.
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, d := range want {
		if !fail() {
			t.Fatalf("ejection %d: a failure on probation did not eject", i+2)
		}
		st := o.Status()
		if len(st) != 1 || st[0].Endpoint != "10.0.0.1:80" || st[0].Cluster != "a" || st[0].Ejections != i+2 || !st[0].Until.Equal(clk.Now().Add(d)) {
			t.Fatalf("ejection %d: status %+v, want until now+%s", i+2, st, d)
		}
		clk.Add(d - time.Millisecond)
		if !o.IsEjected(k) {
			t.Fatalf("ejection %d ended before %s", i+2, d)
		}
		clk.Add(time.Millisecond)
		if o.IsEjected(k) {
			t.Fatalf("ejection %d lasted longer than %s", i+2, d)
		}
	}
	if got := testutil.ToFloat64(m.Ejections.WithLabelValues("demo/api:80", "a")); got != float64(1+len(want)) {
		t.Errorf("strait_gateway_ejections_total %v, want %d", got, 1+len(want))
	}
	// A success resets: back to three failures and the base time.
	o.Success(k)
	if len(o.Status()) != 0 {
		t.Fatalf("status after success: %+v", o.Status())
	}
	for i, want := range []bool{false, false, true} {
		if fail() != want {
			t.Fatalf("after a success: failure %d ejected=%v, want %v", i+1, !want, want)
		}
	}
	if st := o.Status(); len(st) != 1 || st[0].Ejections != 1 || !st[0].Until.Equal(clk.Now().Add(5*time.Second)) {
		t.Fatalf("after a success: status %+v, want the base ejection", st)
	}
	// A failure, a success, a failure: never three in a row.
	k2 := GatewayKey(wire.Target{Namespace: "demo", Name: "api", Port: 80}, "b:15443")
	for range 10 {
		o.Failure(k2, "demo/api:80", "b", false)
		o.Failure(k2, "demo/api:80", "b", false)
		o.Success(k2)
	}
	if o.IsEjected(k2) {
		t.Fatal("ejected without 3 failures in a row")
	}
	if n, err := testutil.GatherAndCount(gatherer(m.Ejected), "strait_gateway_ejected"); err != nil || n != 1 {
		t.Errorf("strait_gateway_ejected series %d (%v), want 1", n, err)
	}
}

// TestSelectorOrderIsAPermutation: for random candidate lists, open
// streams and ejections, the selector returns exactly the candidates it
// was given (it never adds a cluster the planner did not allow, nor drops
// one), the non-ejected ones first in rank order, the ejected ones after
// them in the planner's order.
func TestSelectorOrderIsAPermutation(t *testing.T) {
	s, _, _ := testSelector(t)
	r := rand.New(rand.NewPCG(7, 8))
	tgt := wire.Target{Namespace: "demo", Name: "api", Port: 80}
	for range 2000 {
		var cands []Candidate
		rank := 0
		if r.IntN(2) == 0 {
			cands = append(cands, Candidate{Cluster: "self", Local: true, Rank: rankLocal})
		}
		for i := range r.IntN(8) {
			rank += r.IntN(2)
			c := cand(fmt.Sprintf("c%d", i), rankZone+rank, 1+r.IntN(4))
			if r.IntN(3) == 0 {
				c.Addr = fmt.Sprintf("c%d-gw2:15443", i-1) // a second gateway of the previous cluster
				c.Cluster = fmt.Sprintf("c%d", i-1)
			}
			cands = append(cands, c)
		}
		ejected := map[string]bool{}
		var releases []func()
		for _, c := range cands {
			if !c.Local && r.IntN(4) == 0 {
				ejected[c.Addr] = true
				for range 3 {
					s.Out.Failure(GatewayKey(tgt, c.Addr), tgt.String(), c.Cluster, false)
				}
			}
			if !c.Local {
				for range r.IntN(3) {
					releases = append(releases, s.Acquire(RemoteFlight(tgt, c), c.Cluster))
				}
			}
		}
		localEjected := r.IntN(4) == 0
		got := s.Order(tgt, cands, localEjected)
		key := func(c Candidate) string { return c.Cluster + "@" + c.Addr }
		a, b := make([]string, 0, len(cands)), make([]string, 0, len(got))
		for i := range cands {
			a = append(a, key(cands[i]))
		}
		for i := range got {
			b = append(b, key(got[i]))
		}
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Fatalf("order of %v is %v", a, b)
		}
		isLast := func(c Candidate) bool { return c.Local && localEjected || !c.Local && ejected[c.Addr] }
		var last []string
		for _, c := range cands {
			if isLast(c) {
				last = append(last, key(c))
			}
		}
		n := len(got) - len(last)
		for i, c := range got {
			switch {
			case i < n && isLast(c):
				t.Fatalf("ejected %s at %d of %d before a live candidate", key(c), i, len(got))
			case i > 0 && i < n && c.Rank < got[i-1].Rank:
				t.Fatalf("ranks out of order: %v", got)
			case i >= n && key(c) != last[i-n]:
				t.Fatalf("ejected candidates out of order: %v", got[n:])
			}
		}
		for _, c := range cands {
			s.Out.Success(GatewayKey(tgt, c.Addr))
		}
		for _, release := range releases {
			release()
		}
	}
	if len(s.flight) != 0 {
		t.Fatalf("streams still counted after every release: %v", s.flight)
	}
}

func gatherer(c prometheus.Collector) prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return reg
}
