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
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/internal/fakeclock"
)

// testSelector is a selector with the gateway's metrics, a fake clock and
// a seeded random source.
func testSelector(t *testing.T) (*route.Selector, *fakeclock.Clock, *metrics) {
	t.Helper()
	clk := fakeclock.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	m := newMetrics(prometheus.NewRegistry(), "test", "a")
	s := route.NewSelector("a", route.DefaultOutlierConfig(), m.selector(), clk, slog.New(slog.DiscardHandler))
	s.SetRand(rand.New(rand.NewPCG(1, 2)).Float64)
	return s, clk, m
}

// selectGateway is a gateway with just what dialLocal needs: local
// service demo/api on port 80 with endpoints addrs.
func selectGateway(t *testing.T, addrs ...string) (*Gateway, *fakeclock.Clock) {
	t.Helper()
	s, clk, m := testSelector(t)
	g := &Gateway{cfg: Config{Cluster: "a"}, sel: s, metrics: m, log: slog.New(slog.DiscardHandler)}
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
	for i := 0; !g.sel.Out.IsEjected(route.EndpointKey(deadAddr)); i++ {
		if i == 200 {
			t.Fatal("dead endpoint not ejected after 200 connections")
		}
		c, err := g.dialEndpoints(ctx, tgt, addrs)
		if err != nil {
			t.Fatalf("connection %d failed with a live endpoint: %v", i, err)
		}
		open = append(open, c)
	}
	if got := g.sel.Inflight(route.FlightKey{Addr: liveAddr}); got != len(open) {
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
	if got := g.sel.Inflight(route.FlightKey{Addr: liveAddr}); got != 0 {
		t.Fatalf("%d in flight after every connection closed", got)
	}
	if got := testutil.ToFloat64(gauge); got != 0 {
		t.Fatalf("in-flight gauge %v after every connection closed", got)
	}

	st := g.sel.Out.Status()
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
	if st := g.sel.Out.Status(); st[0].Failures != 3 {
		t.Fatalf("the ejected endpoint was dialled: %d failures", st[0].Failures)
	}

	// Both ejected: still dialled as a last resort, and a live one answers
	// (which un-ejects it).
	for range 3 {
		g.sel.Out.Failure(route.EndpointKey(liveAddr), tgt.String(), "a", true)
	}
	if !g.localEjected(tgt) {
		t.Fatal("every endpoint ejected, localEjected false")
	}
	c, err = g.dialEndpoints(ctx, tgt, addrs)
	if err != nil {
		t.Fatalf("every endpoint ejected: %v", err)
	}
	c.Close()
	if g.sel.Out.IsEjected(route.EndpointKey(liveAddr)) || g.localEjected(tgt) {
		t.Fatal("an answer did not end the ejection")
	}

	// After the ejection ends the dead endpoint gets dialled again and one
	// failure ejects it for twice as long.
	clk.Add(5 * time.Second)
	for i := 0; !g.sel.Out.IsEjected(route.EndpointKey(deadAddr)); i++ {
		if i == 100 {
			t.Fatal("dead endpoint never dialled again after its ejection")
		}
		c, err := g.dialEndpoints(ctx, tgt, addrs)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if st := g.sel.Out.Status(); len(st) != 1 || st[0].Failures != 4 || st[0].Ejections != 2 || !st[0].Until.Equal(clk.Now().Add(10*time.Second)) {
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
	before := g.sel.Out.Status()
	if _, err := g.dialEndpoints(cctx, tgt, addrs); err == nil {
		t.Fatal("dial with a cancelled context succeeded")
	}
	if after := g.sel.Out.Status(); fmt.Sprint(after) != fmt.Sprint(before) {
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
	c := route.Candidate{Cluster: "b", Region: "r", Addr: "b:15443", Rank: 3, Healthy: 1}
	// Every outbound connection to a gateway goes through the pool's dialer.
	g.tunnels = tunnel.NewPool(context.Background(), tunnel.Config{Connect: time.Second}, nil,
		func(ctx context.Context, addr string) (net.Conn, error) { return nil, errors.New("connection refused") }, nil, g.metrics.tunnel(), g.log, nil)
	for range 3 {
		a := &attempt{g: g, t: tgt, svc: tgt.String(), p: &route.Plan{Allowed: []route.Candidate{c}}, cands: []route.Candidate{c}, nre: &route.NoRouteError{Target: tgt}}
		if _, _, _, err := a.open(context.Background()); err == nil {
			t.Fatal("dial succeeded")
		}
	}
	st := g.sel.Out.Status()
	if len(st) != 1 || st[0].Gateway != "b:15443" || st[0].Cluster != "b" || st[0].Service != "demo/api:80" {
		t.Fatalf("status %+v, want gateway b ejected for demo/api:80", st)
	}
	if got := g.sel.Inflight(route.RemoteFlight(tgt, c)); got != 0 {
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
		if got := route.GatewayFault(tc.ctx, tc.err); got != tc.want {
			t.Errorf("gatewayFault(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
