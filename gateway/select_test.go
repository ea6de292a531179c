package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// fakeClock is a clock moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var discard = slog.New(slog.DiscardHandler)

func defaultOutlier() OutlierConfig { return DefaultConfig().Outlier }

// testSelector is a selector with its own metrics, a fake clock and a
// seeded random source.
func testSelector(t *testing.T) (*selector, *fakeClock, *metrics) {
	t.Helper()
	clk := newFakeClock()
	m := newMetrics(prometheus.NewRegistry())
	s := newSelector("a", defaultOutlier(), m, clk, discard)
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

func names(cs []candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.cluster)
	}
	return strings.Join(out, ",")
}

// TestPlanOrdersFailoverAfterLocality: the failover priority orders the
// clusters beyond the local region, in the order listed, before the rest;
// locality ranks stay first whether or not the list names a cluster; the
// policy still removes every forbidden cluster, listed or not.
func TestPlanOrdersFailoverAfterLocality(t *testing.T) {
	self := selfInfo{cluster: "a", region: "eu-west", zone: "eu-west-1a"}
	snap := exporters("api", nil, 2,
		"b:eu-west:eu-west-1a", "c:eu-west:eu-west-1b", "d:eu-central:eu-central-1a",
		"e:us-east:us-east-1a", "f:ap-south:ap-south-1a", "g:us-west:us-west-1a")
	tgt := wire.Target{Namespace: "demo", Name: "api", Port: 80}
	local := localView{exists: true, hasPort: true, healthy: true}
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
		p := planRoute(self, local, snap, allow, tgt, flowIn{entry: "test"}, tc.prio)
		if got := names(p.allowed); got != tc.want {
			t.Errorf("priority %v: order %s, want %s", tc.prio, got, tc.want)
		}
	}
	p := planRoute(self, local, snap, allow, tgt, flowIn{entry: "test"}, []string{"f", "d"})
	var ranks []int
	for _, c := range p.allowed {
		ranks = append(ranks, c.rank)
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
	p = planRoute(self, localView{}, pii, eng, lt, flowIn{entry: "test"}, []string{"e", "f"})
	if got := names(p.allowed); got != "f,d" {
		t.Errorf("pii-eu with priority [e f]: allowed %s, want f,d", got)
	}
	if d := p.denied(); len(d) != 1 || d[0].cand.cluster != "e" {
		t.Errorf("denied %+v, want e", d)
	}
	p = planRoute(self, localView{}, pii, eng, lt, flowIn{entry: "test"}, nil)
	if got := names(p.allowed); got != "d,f" {
		t.Errorf("pii-eu without priority: allowed %s, want d,f", got)
	}
}

func cand(cluster string, rank, healthy int) candidate {
	return candidate{cluster: cluster, region: "r", addr: cluster + ":15443", rank: rank, healthy: healthy}
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
	local := candidate{cluster: "a", region: "r", local: true, rank: rankLocal}
	cands := []candidate{local, cand("b", 1, 1), cand("c", 3, 1), cand("d", 3, 3), cand("e", 4, 1)}

	first := map[string]int{}
	const n = 8000
	for range n {
		o := s.order(tgt, cands, false)
		if o[0].cluster != "a" || o[1].cluster != "b" || o[4].cluster != "e" {
			t.Fatalf("order %s: ranks mixed", names(o))
		}
		if got := names(o[2:4]); got != "c,d" && got != "d,c" {
			t.Fatalf("order %s: rank 3 is not c and d", names(o))
		}
		first[o[2].cluster]++
	}
	if got := float64(first["d"]) / n; got < 0.72 || got > 0.78 {
		t.Errorf("d (3 healthy) led its rank %.3f of the time against c (1 healthy), want 0.75", got)
	}

	// The two gateways of cluster d share its weight: c leads half the time.
	ha := []candidate{cand("c", 3, 2), {cluster: "d", region: "r", addr: "d1:15443", rank: 3, healthy: 2}, {cluster: "d", region: "r", addr: "d2:15443", rank: 3, healthy: 2}}
	clear(first)
	for range n {
		first[s.order(tgt, ha, false)[0].addr]++
	}
	if got := float64(first["c:15443"]) / n; got < 0.46 || got > 0.54 {
		t.Errorf("c led against an HA pair with the same endpoints %.3f of the time, want 0.5", got)
	}

	// Streams open to d make c lead.
	releases := []func(){}
	for range 4 {
		releases = append(releases, s.acquire(remoteFlight(tgt, cands[3]), "d"))
	}
	for range 100 {
		if o := s.order(tgt, cands, false); o[2].cluster != "c" {
			t.Fatalf("d has 4 streams per 3 endpoints, c none: order %s", names(o))
		}
	}
	for _, r := range releases {
		r()
		r() // idempotent
	}
	if got := s.inflight(remoteFlight(tgt, cands[3])); got != 0 {
		t.Fatalf("after release: %d in flight", got)
	}

	// Ejected gateways and an ejected local cluster go last, in order.
	for range 3 {
		s.out.failure(gatewayKey(tgt, "c:15443"), tgt.String(), "c", false)
		s.out.failure(gatewayKey(tgt, "b:15443"), tgt.String(), "b", false)
	}
	for range 50 {
		if got := names(s.order(tgt, cands, true)); got != "d,e,a,b,c" {
			t.Fatalf("with a, b and c ejected: order %s, want d,e,a,b,c", got)
		}
	}
	// Another service's gateways are not ejected.
	other := wire.Target{Namespace: "demo", Name: "other", Port: 80}
	if got := names(s.order(other, cands[:3], false)); got != "a,b,c" {
		t.Errorf("other service: order %s", got)
	}
	clk.Add(5 * time.Second)
	if got := names(s.order(tgt, cands[:3], false)); got != "a,b,c" {
		t.Errorf("after the ejection: order %s, want a,b,c", got)
	}
}

// TestOutlierBackoff: three failures in a row eject for the base time; a
// failure after an ejection ends ejects again for twice as long, up to the
// maximum; one success forgets everything.
func TestOutlierBackoff(t *testing.T) {
	s, clk, m := testSelector(t)
	o := s.out
	k := endpointKey("10.0.0.1:80")
	fail := func() bool { return o.failure(k, "demo/api:80", "a", true) }
	for i := range 2 {
		if fail() {
			t.Fatalf("ejected after %d failures", i+1)
		}
	}
	if o.isEjected(k) {
		t.Fatal("ejected after 2 failures")
	}
	if !fail() || !o.isEjected(k) {
		t.Fatal("not ejected after 3 failures")
	}
	// Failures while ejected change nothing.
	if fail() {
		t.Fatal("ejected again while ejected")
	}
	clk.Add(5*time.Second - time.Millisecond)
	if !o.isEjected(k) {
		t.Fatal("ejection ended before 5s")
	}
	clk.Add(time.Millisecond)
	if o.isEjected(k) {
		t.Fatal("still ejected after 5s")
	}
	// Probation: one failure ejects again, doubling.
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, d := range want {
		if !fail() {
			t.Fatalf("ejection %d: a failure on probation did not eject", i+2)
		}
		st := o.status()
		if len(st) != 1 || st[0].Endpoint != "10.0.0.1:80" || st[0].Cluster != "a" || st[0].Ejections != i+2 || !st[0].Until.Equal(clk.Now().Add(d)) {
			t.Fatalf("ejection %d: status %+v, want until now+%s", i+2, st, d)
		}
		clk.Add(d - time.Millisecond)
		if !o.isEjected(k) {
			t.Fatalf("ejection %d ended before %s", i+2, d)
		}
		clk.Add(time.Millisecond)
		if o.isEjected(k) {
			t.Fatalf("ejection %d lasted longer than %s", i+2, d)
		}
	}
	if got := testutil.ToFloat64(m.ejections.WithLabelValues("demo/api:80", "a")); got != float64(1+len(want)) {
		t.Errorf("strait_gateway_ejections_total %v, want %d", got, 1+len(want))
	}
	// A success resets: back to three failures and the base time.
	o.success(k)
	if len(o.status()) != 0 {
		t.Fatalf("status after success: %+v", o.status())
	}
	for i, want := range []bool{false, false, true} {
		if fail() != want {
			t.Fatalf("after a success: failure %d ejected=%v, want %v", i+1, !want, want)
		}
	}
	if st := o.status(); len(st) != 1 || st[0].Ejections != 1 || !st[0].Until.Equal(clk.Now().Add(5*time.Second)) {
		t.Fatalf("after a success: status %+v, want the base ejection", st)
	}
	// A failure, a success, a failure: never three in a row.
	k2 := gatewayKey(wire.Target{Namespace: "demo", Name: "api", Port: 80}, "b:15443")
	for range 10 {
		o.failure(k2, "demo/api:80", "b", false)
		o.failure(k2, "demo/api:80", "b", false)
		o.success(k2)
	}
	if o.isEjected(k2) {
		t.Fatal("ejected without 3 failures in a row")
	}
	if n, err := testutil.GatherAndCount(gatherer(m), "strait_gateway_ejected"); err != nil || n != 1 {
		t.Errorf("strait_gateway_ejected series %d (%v), want 1", n, err)
	}
}

func gatherer(m *metrics) prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.ejected)
	return reg
}

// selectGateway is a gateway with just what dialLocal needs: local
// service demo/api on port 80 with endpoints addrs.
func selectGateway(t *testing.T, addrs ...string) (*Gateway, *fakeClock) {
	t.Helper()
	s, clk, m := testSelector(t)
	g := &Gateway{cfg: Config{Cluster: "a"}, sel: s, metrics: m, log: discard}
	svc := discovery.Service{Namespace: "demo", Name: "api", Ports: []discovery.Port{{Port: 80}}}
	var port string
	for _, a := range addrs {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		if port != "" && p != port {
			t.Fatalf("endpoints on different ports: %v", addrs)
		}
		port = p
		svc.Endpoints = append(svc.Endpoints, h)
	}
	fmt.Sscan(port, &svc.Ports[0].TargetPort)
	g.local.Store(&localTable{byKey: map[string]discovery.Service{"demo/api": svc}, down: map[string]bool{}})
	return g, clk
}

// echoListener accepts on host:port (port 0 picks one) and closes every
// connection when the test ends.
func echoListener(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln
}

// TestDialLocalCountsAndEjects: streams to local endpoints are counted
// until closed; a dead endpoint never fails a connection another endpoint
// could take, is ejected after three failures and then not dialled while
// ejected; after the ejection it gets one more chance.
func TestDialLocalCountsAndEjects(t *testing.T) {
	live := echoListener(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(live.Addr().String())
	deadLn, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		t.Fatalf("bind a second loopback address (127.0.0.0/8 is loopback on Linux; strait dev needs it too): %v", err)
	}
	deadLn.Close()
	liveAddr, deadAddr := live.Addr().String(), "127.0.0.2:"+port
	g, clk := selectGateway(t, liveAddr, deadAddr)
	tgt := wire.Target{Namespace: "demo", Name: "api", Port: 80}
	addrs, _ := g.local.Load().endpoints(g.local.Load().byKey["demo/api"], 80)
	ctx := context.Background()
	gauge := g.metrics.inflight.WithLabelValues("a")

	var open []net.Conn
	for i := 0; !g.sel.out.isEjected(endpointKey(deadAddr)); i++ {
		if i == 200 {
			t.Fatal("dead endpoint not ejected after 200 connections")
		}
		c, err := g.dialEndpoints(ctx, tgt, addrs)
		if err != nil {
			t.Fatalf("connection %d failed with a live endpoint: %v", i, err)
		}
		open = append(open, c)
	}
	if got := g.sel.inflight(flightKey{addr: liveAddr}); got != len(open) {
		t.Fatalf("%d in flight to the live endpoint, want %d", got, len(open))
	}
	if got := testutil.ToFloat64(gauge); got != float64(len(open)) {
		t.Fatalf("strait_gateway_inflight_streams{cluster=a} %v, want %d", got, len(open))
	}
	// The connection works through the wrapper, half-close included.
	c := open[0]
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if b, err := io.ReadAll(c); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
	for _, c := range open {
		c.Close()
		c.Close()
	}
	if got := g.sel.inflight(flightKey{addr: liveAddr}); got != 0 {
		t.Fatalf("%d in flight after every connection closed", got)
	}
	if got := testutil.ToFloat64(gauge); got != 0 {
		t.Fatalf("in-flight gauge %v after every connection closed", got)
	}

	st := g.sel.out.status()
	if len(st) != 1 || st[0].Endpoint != deadAddr || st[0].Failures != 3 || st[0].Service != "demo/api:80" {
		t.Fatalf("status %+v, want %s ejected after 3 failures", st, deadAddr)
	}
	for range 50 {
		c, err := g.dialEndpoints(ctx, tgt, addrs)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if st := g.sel.out.status(); st[0].Failures != 3 {
		t.Fatalf("the ejected endpoint was dialled: %d failures", st[0].Failures)
	}

	// Both ejected: still dialled as a last resort, and a live one answers
	// (which un-ejects it).
	for range 3 {
		g.sel.out.failure(endpointKey(liveAddr), tgt.String(), "a", true)
	}
	if !g.localEjected(tgt) {
		t.Fatal("every endpoint ejected, localEjected false")
	}
	c, err = g.dialEndpoints(ctx, tgt, addrs)
	if err != nil {
		t.Fatalf("every endpoint ejected: %v", err)
	}
	c.Close()
	if g.sel.out.isEjected(endpointKey(liveAddr)) || g.localEjected(tgt) {
		t.Fatal("an answer did not end the ejection")
	}

	// After the ejection ends the dead endpoint gets dialled again and one
	// failure ejects it for twice as long.
	clk.Add(5 * time.Second)
	for i := 0; !g.sel.out.isEjected(endpointKey(deadAddr)); i++ {
		if i == 100 {
			t.Fatal("dead endpoint never dialled again after its ejection")
		}
		c, err := g.dialEndpoints(ctx, tgt, addrs)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if st := g.sel.out.status(); len(st) != 1 || st[0].Failures != 4 || st[0].Ejections != 2 || !st[0].Until.Equal(clk.Now().Add(10*time.Second)) {
		t.Fatalf("status %+v, want a second ejection of 10s after one more failure", st)
	}

	// Nothing answers: the error names both, nothing stays counted.
	live.Close()
	if _, err := g.dialEndpoints(ctx, tgt, addrs); err == nil || !strings.Contains(err.Error(), "no endpoint answered") {
		t.Fatalf("all dead: %v", err)
	}
	if got := testutil.ToFloat64(gauge); got != 0 {
		t.Fatalf("in-flight gauge %v after failed dials", got)
	}
	// A cancelled dial is not the endpoint's failure.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	before := g.sel.out.status()
	if _, err := g.dialEndpoints(cctx, tgt, addrs); err == nil {
		t.Fatal("dial with a cancelled context succeeded")
	}
	if after := g.sel.out.status(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a cancelled dial changed outlier state: %+v -> %+v", before, after)
	}
}

// TestOpenRemoteCounts: failed connects through a remote gateway eject it
// for the service, without leaving a stream counted; residency refusals
// and abandoned connects do not count against it.
func TestOpenRemoteCounts(t *testing.T) {
	g, _ := selectGateway(t)
	g.ctx = context.Background()
	g.cfg.Timeouts.Connect = time.Second
	tgt := wire.Target{Namespace: "demo", Name: "api", Port: 80}
	c := cand("b", rankPriority, 1)
	g.dial = func(ctx context.Context, addr string) (net.Conn, error) { return nil, errors.New("connection refused") }
	for range 3 {
		a := &attempt{g: g, t: tgt, svc: tgt.String(), p: &routePlan{allowed: []candidate{c}}, cands: []candidate{c}, nre: &NoRouteError{Target: tgt}}
		if _, _, _, err := a.open(context.Background()); err == nil {
			t.Fatal("dial succeeded")
		}
	}
	st := g.sel.out.status()
	if len(st) != 1 || st[0].Gateway != "b:15443" || st[0].Cluster != "b" || st[0].Service != "demo/api:80" {
		t.Fatalf("status %+v, want gateway b ejected for demo/api:80", st)
	}
	if got := g.sel.inflight(remoteFlight(tgt, c)); got != 0 {
		t.Fatalf("%d in flight after failed dials", got)
	}
	if got := testutil.ToFloat64(g.metrics.ejections.WithLabelValues("demo/api:80", "b")); got != 1 {
		t.Fatalf("ejections_total %v", got)
	}

	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithTimeout(ctx, -time.Second)
	defer cancel2()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want bool
	}{
		{ctx, errors.New("dial gateway b:15443: connection refused"), true},
		{ctx, fmt.Errorf("gateway b:15443: %w", &wire.Refusal{Reason: "demo/api:80 in b: no endpoint answered"}), true},
		{ctx, fmt.Errorf("gateway b:15443: %w", &wire.Refusal{Reason: wire.ResidencyPrefix + "class pii-eu allows regions [eu]"}), false},
		{cancelled, context.Canceled, false},
		{expired, context.DeadlineExceeded, true},
	} {
		if got := gatewayFault(tc.ctx, tc.err); got != tc.want {
			t.Errorf("gatewayFault(%v) = %v, want %v", tc.err, got, tc.want)
		}
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
		var cands []candidate
		rank := 0
		if r.IntN(2) == 0 {
			cands = append(cands, candidate{cluster: "self", local: true, rank: rankLocal})
		}
		for i := range r.IntN(8) {
			rank += r.IntN(2)
			c := cand(fmt.Sprintf("c%d", i), rankZone+rank, 1+r.IntN(4))
			if r.IntN(3) == 0 {
				c.addr = fmt.Sprintf("c%d-gw2:15443", i-1) // a second gateway of the previous cluster
				c.cluster = fmt.Sprintf("c%d", i-1)
			}
			cands = append(cands, c)
		}
		ejected := map[string]bool{}
		var releases []func()
		for _, c := range cands {
			if !c.local && r.IntN(4) == 0 {
				ejected[c.addr] = true
				for range 3 {
					s.out.failure(gatewayKey(tgt, c.addr), tgt.String(), c.cluster, false)
				}
			}
			if !c.local {
				for range r.IntN(3) {
					releases = append(releases, s.acquire(remoteFlight(tgt, c), c.cluster))
				}
			}
		}
		localEjected := r.IntN(4) == 0
		got := s.order(tgt, cands, localEjected)
		key := func(c candidate) string { return c.cluster + "@" + c.addr }
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
		isLast := func(c candidate) bool { return c.local && localEjected || !c.local && ejected[c.addr] }
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
			case i > 0 && i < n && c.rank < got[i-1].rank:
				t.Fatalf("ranks out of order: %v", got)
			case i >= n && key(c) != last[i-n]:
				t.Fatalf("ejected candidates out of order: %v", got[n:])
			}
		}
		for _, c := range cands {
			s.out.success(gatewayKey(tgt, c.addr))
		}
		for _, release := range releases {
			release()
		}
	}
	if len(s.flight) != 0 {
		t.Fatalf("streams still counted after every release: %v", s.flight)
	}
}
