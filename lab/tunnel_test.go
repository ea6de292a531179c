package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/lab"
)

// lineService answers every line it reads with "<cluster> <length>\n".
func lineService(t *testing.T, key, cluster string) discovery.Service {
	s, _ := startLineService(t, key, cluster)
	return s
}

// startLineService is lineService; stop closes its listener and every
// connection it holds.
func startLineService(t *testing.T, key, cluster string) (svc discovery.Service, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	addr := serve(t, ln, func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		br := bufio.NewReaderSize(c, 1<<20)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(c, "%s %d\n", cluster, len(line)-1); err != nil {
				return
			}
		}
	})
	stop = func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	return serviceAt(key, "tcp", 7000, addr, nil), stop
}

// lineConn is a client of a lineService through an import port.
type lineConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{c: c, br: bufio.NewReader(c)}
}

// ask sends a line of n bytes and returns the cluster that answered.
func (l *lineConn) ask(n int) (string, error) {
	l.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(l.c, strings.Repeat("x", n)+"\n"); err != nil {
		return "", err
	}
	answer, err := l.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	cluster, size, _ := strings.Cut(strings.TrimSpace(answer), " ")
	if size != strconv.Itoa(n) {
		return cluster, fmt.Errorf("%s saw %s bytes, want %d", cluster, size, n)
	}
	return cluster, nil
}

// askOnce asks one question on a connection of its own and closes it.
func askOnce(t *testing.T, addr string, n int) string {
	t.Helper()
	lc := dialLine(t, addr)
	defer lc.c.Close()
	cluster, err := lc.ask(n)
	if err != nil {
		t.Fatal(err)
	}
	return cluster
}

var lineImport = []gateway.Import{{Service: "demo/lines", Port: 7000, Listen: "127.0.0.1:0"}}

func startLineLab(t *testing.T, spec lab.Spec, clusters ...lab.ClusterSpec) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec.Clusters = clusters
	if spec.Timeouts.Connect == 0 {
		spec.Timeouts = gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: 3 * time.Second}
	}
	if spec.Health.Interval == 0 {
		spec.Health = gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond}
	}
	l, err := lab.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestTunnelsCarryManyConnectionsOnFewHandshakes(t *testing.T) {
	for _, tunnels := range []bool{true, false} {
		t.Run(fmt.Sprintf("tunnels=%v", tunnels), func(t *testing.T) {
			l := startLineLab(t, lab.Spec{NoTunnels: !tunnels},
				lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
				lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
			a, b := l.Gateway("a"), l.Gateway("b")
			addr := a.ImportAddrs()["demo/lines:7000"]
			const conns = 40
			for range conns {
				if got := askOnce(t, addr, 100); got != "b" {
					t.Fatalf("answered by %q", got)
				}
			}
			dials := metricValue(t, a, "strait_gateway_tunnel_dials_total", map[string]string{"result": "ok"})
			if got := inboundFrom(t, b, "demo/lines:7000", "a"); got != conns {
				t.Fatalf("b carried %v streams from a, want %d", got, conns)
			}
			if !tunnels {
				if dials != 0 {
					t.Fatalf("%v tunnels dialled with tunnels off", dials)
				}
				return
			}
			// Two per peer by default, the second dialled in the background.
			if dials < 1 || dials > 2 {
				t.Fatalf("%v tunnels dialled for %d connections, want 1-2", dials, conns)
			}
			if got := metricValue(t, b, "strait_gateway_tunnels", map[string]string{"direction": "inbound"}); got != dials {
				t.Fatalf("b has %v inbound tunnels, a dialled %v", got, dials)
			}
			st := a.Status().Tunnels
			if len(st) != int(dials) || st[0].Peer != "b" || st[0].State != "open" || st[0].Addr != b.DataAddr() {
				t.Fatalf("status tunnels %+v", st)
			}
		})
	}
}

func TestTunnelFallsBackToConnectionPerStream(t *testing.T) {
	l := startLineLab(t, lab.Spec{},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", NoTunnels: true, Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a := l.Gateway("a")
	addr := a.ImportAddrs()["demo/lines:7000"]
	for i := range 10 {
		if got := askOnce(t, addr, 10+i); got != "b" {
			t.Fatalf("answered by %q", got)
		}
	}
	if got := metricValue(t, a, "strait_gateway_tunnel_dials_total", map[string]string{"result": "no-tunnels"}); got != 1 {
		t.Fatalf("peer without tunnels asked %v times, want once (then remembered)", got)
	}
	if got := metricValue(t, a, "strait_gateway_tunnel_dials_total", map[string]string{"result": "ok"}); got != 0 {
		t.Fatalf("%v tunnels to a peer without tunnels", got)
	}
	if got := inboundFrom(t, l.Gateway("b"), "demo/lines:7000", "a"); got != 10 {
		t.Fatalf("b carried %v streams, want 10", got)
	}
	if st := a.Status().Tunnels; len(st) != 1 || st[0].State != "per-stream" {
		t.Fatalf("status tunnels %+v", st)
	}
}

func TestTunnelKeepaliveNoticesCutLink(t *testing.T) {
	l := startLineLab(t, lab.Spec{},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a := l.Gateway("a")
	askOnce(t, a.ImportAddrs()["demo/lines:7000"], 1)
	waitFor(t, func() bool {
		return metricValue(t, a, "strait_gateway_tunnels", map[string]string{"direction": "outbound"}) >= 1
	})
	if err := l.Link("a", "b").Partition(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	waitFor(t, func() bool {
		return metricValue(t, a, "strait_gateway_tunnels", map[string]string{"direction": "outbound"}) == 0
	})
	took := time.Since(cut)
	// Either end's keepalive may fire first (the link passes the other's close).
	keepalive := map[string]string{"reason": "keepalive"}
	if metricValue(t, a, "strait_gateway_tunnels_closed_total", keepalive)+metricValue(t, l.Gateway("b"), "strait_gateway_tunnels_closed_total", keepalive) < 1 {
		t.Fatalf("tunnels closed for another reason than the keepalive")
	}
	// keepalive 250ms + timeout 500ms; the slack is for a loaded machine.
	if took > 1500*time.Millisecond {
		t.Fatalf("dead peer noticed after %s", took)
	}
	t.Logf("cut link noticed after %s", took)
}

func TestEarlyBytesGoToTheNextClusterWhenOneRefuses(t *testing.T) {
	// b is preferred (same region) and believed healthy, but its endpoint
	// is gone: b's gateway answers ERR and the client's first bytes, sent
	// with the stream, go to c instead.
	dead, stop := startLineService(t, "demo/lines", "b")
	l := startLineLab(t, lab.Spec{Health: gateway.HealthConfig{Interval: time.Hour, Timeout: time.Second}},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r1", Services: []discovery.Service{dead}},
		lab.ClusterSpec{Name: "c", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "c")}})
	a := l.Gateway("a")
	addr := a.ImportAddrs()["demo/lines:7000"]
	if got := askOnce(t, addr, 1); got != "b" {
		t.Fatalf("answered by %q, want b", got)
	}
	stop()
	for _, n := range []int{1, 10_000, 60_000, 200_000} {
		if got := askOnce(t, addr, n); got != "c" {
			t.Fatalf("%d bytes answered by %q, want c", n, got)
		}
	}
	// Three refusals in a row eject b (outlier.consecutiveFailures): the
	// fourth connection goes to c first.
	if got := metricValue(t, a, "strait_gateway_failovers_total", map[string]string{"service": "demo/lines:7000", "destination_cluster": "b"}); got != 3 {
		t.Fatalf("%v failovers from b, want 3", got)
	}
	if got := metricValue(t, l.Gateway("b"), "strait_gateway_connections_total", map[string]string{"direction": "inbound", "result": "refused"}); got != 3 {
		t.Fatalf("b refused %v streams, want 3", got)
	}
	if got := metricValue(t, a, "strait_gateway_ejections_total", map[string]string{"service": "demo/lines:7000", "destination_cluster": "b"}); got != 1 {
		t.Fatalf("b ejected %v times, want 1", got)
	}
}

func TestDrainFinishesOpenStreamsAndSendsNewOnesElsewhere(t *testing.T) {
	// A drain deadline far beyond the test's waits: b must stop because its
	// last stream ended, not because the deadline passed.
	l := startLineLab(t, lab.Spec{Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: 30 * time.Second}},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r1", Services: []discovery.Service{lineService(t, "demo/lines", "b")}},
		lab.ClusterSpec{Name: "c", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "c")}})
	addr := l.Gateway("a").ImportAddrs()["demo/lines:7000"]
	open := dialLine(t, addr)
	if got, err := open.ask(5); err != nil || got != "b" {
		t.Fatalf("open connection answered by %q: %v", got, err)
	}
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- l.StopGateway(ctx, "b")
	}()
	// New connections go to c while b drains, without a failure.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := askOnce(t, addr, 7)
		if got == "c" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new connections still go to the draining gateway")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("b stopped (%v) with a stream open and the drain deadline ahead", err)
	default:
	}
	// The open connection still works through the draining gateway.
	for i := range 3 {
		if got, err := open.ask(100 + i); err != nil || got != "b" {
			t.Fatalf("open connection during drain: %q %v", got, err)
		}
	}
	open.c.Close()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("b did not stop once its last stream ended")
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	l := startLineLab(t, lab.Spec{Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second, Idle: 300 * time.Millisecond}},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	addr := l.Gateway("a").ImportAddrs()["demo/lines:7000"]
	busy, idle := dialLine(t, addr), dialLine(t, addr)
	for _, c := range []*lineConn{busy, idle} {
		if _, err := c.ask(3); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		if _, err := busy.ask(3); err != nil {
			t.Fatalf("busy connection closed: %v", err)
		}
	}
	idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle.c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read %d, %v; want EOF", n, err)
	}
	if got := metricValue(t, l.Gateway("a"), "strait_gateway_idle_closed_total", nil); got < 1 {
		t.Fatalf("idle closes counted %v", got)
	}
}

func TestConnectionLimitRefusesTheExcess(t *testing.T) {
	l := startLineLab(t, lab.Spec{},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport, MaxConnections: 2},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a := l.Gateway("a")
	addr := a.ImportAddrs()["demo/lines:7000"]
	first, second := dialLine(t, addr), dialLine(t, addr)
	for _, c := range []*lineConn{first, second} {
		if _, err := c.ask(3); err != nil {
			t.Fatal(err)
		}
	}
	third := dialLine(t, addr)
	if _, err := third.ask(3); err == nil {
		t.Fatal("a third connection was carried with a limit of 2")
	}
	if got := metricValue(t, a, "strait_gateway_connections_refused_total", map[string]string{"listener": "import"}); got != 1 {
		t.Fatalf("refused %v, want 1", got)
	}
	first.c.Close()
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = (&lineConn{c: c, br: bufio.NewReader(c)}).ask(4)
		return err == nil
	})
}

func TestWithoutEarlyDataACutTunnelFailsOverEveryConnection(t *testing.T) {
	l := startLineLab(t, lab.Spec{NoEarlyData: true},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r1", Services: []discovery.Service{lineService(t, "demo/lines", "b")}},
		lab.ClusterSpec{Name: "c", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "c")}})
	addr := l.Gateway("a").ImportAddrs()["demo/lines:7000"]
	if got := askOnce(t, addr, 10); got != "b" {
		t.Fatalf("answered by %q, want b", got)
	}
	if err := l.Link("a", "b").Partition(); err != nil {
		t.Fatal(err)
	}
	// Each client sends at once; the bytes wait for b's answer, which never
	// comes, and go to c when the keepalive gives the tunnel up.
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			lc := &lineConn{c: c, br: bufio.NewReader(c)}
			got, err := lc.ask(1000 + i)
			if err == nil && got != "c" {
				err = fmt.Errorf("answered by %q, want c", got)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestCutPeerIsTriedLastUntilItAnswers(t *testing.T) {
	// Default connect timeout (3s): without knowing b is cut off, every new
	// connection would first wait for a tunnel to b that never comes.
	l := startLineLab(t, lab.Spec{Timeouts: gateway.Timeouts{Connect: 3 * time.Second, Budget: 5 * time.Second, Drain: time.Second}},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r1", Services: []discovery.Service{lineService(t, "demo/lines", "b")}},
		lab.ClusterSpec{Name: "c", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "c")}})
	a, b := l.Gateway("a"), l.Gateway("b")
	addr := a.ImportAddrs()["demo/lines:7000"]
	if got := askOnce(t, addr, 1); got != "b" {
		t.Fatalf("answered by %q, want b", got)
	}
	if err := l.Link("a", "b").Partition(); err != nil {
		t.Fatal(err)
	}
	down := func() bool {
		for _, tu := range a.Status().Tunnels {
			if tu.Addr == b.DataAddr() && tu.State == "down" {
				return true
			}
		}
		return false
	}
	waitFor(t, down)
	for i := range 5 {
		start := time.Now()
		if got := askOnce(t, addr, 10+i); got != "c" {
			t.Fatalf("answered by %q, want c", got)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("connection %d took %s: the cut peer was tried first", i, took)
		}
	}
	// Healed, the probe finds b again and traffic returns to it.
	if err := l.Link("a", "b").Heal(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !down() })
	if got := askOnce(t, addr, 3); got != "b" {
		t.Fatalf("after heal: answered by %q, want b", got)
	}
}

// tailService reads until its client half-closes, then answers for a
// while: a client that sends its request and half-closes, then reads a
// long answer.
func tailService(t *testing.T, chunks int, every time.Duration) discovery.Service {
	t.Helper()
	addr := serveTCP(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		for i := range chunks {
			if _, err := fmt.Fprintf(c, "chunk %d of a %d-byte request\n", i, n); err != nil {
				return
			}
			time.Sleep(every)
		}
	})
	return serviceAt("demo/lines", "tcp", 7000, addr, nil)
}

func TestHalfClosedStreamOutlivesTheDrainTimeout(t *testing.T) {
	for _, tunnels := range []bool{true, false} {
		t.Run(fmt.Sprintf("tunnels=%v", tunnels), func(t *testing.T) {
			l := startLineLab(t, lab.Spec{NoTunnels: !tunnels, Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: 500 * time.Millisecond}},
				lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
				lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{tailService(t, 15, 100*time.Millisecond)}})
			c, err := net.DialTimeout("tcp", l.Gateway("a").ImportAddrs()["demo/lines:7000"], time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, strings.Repeat("q", 1000)); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			answer, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("after %d bytes: %v", len(answer), err)
			}
			if lines := strings.Count(string(answer), "of a 1000-byte request\n"); lines != 15 {
				t.Fatalf("got %d of 15 chunks 1.5 s after the half-close:\n%s", lines, answer)
			}
		})
	}
}

// TestAnswerWhateverTheServiceDoesFirst: b answers a stream with the
// service's first bytes when they come at once, and alone after a short
// wait when they do not. Whichever the service does first (speaks, waits
// for a request larger than what a sends before the answer, closes), the
// client sees it, with tunnels and with a connection per stream.
func TestAnswerWhateverTheServiceDoesFirst(t *testing.T) {
	banner := serviceAt("demo/banner", "tcp", 7001, serveTCP(t, func(c net.Conn) {
		io.WriteString(c, "hello from b\n")
	}), nil)
	closer := serviceAt("demo/closer", "tcp", 7002, serveTCP(t, func(c net.Conn) {}), nil)
	imports := append([]gateway.Import{
		{Service: "demo/banner", Port: 7001, Listen: "127.0.0.1:0"},
		{Service: "demo/closer", Port: 7002, Listen: "127.0.0.1:0"},
	}, lineImport...)
	for _, tunnels := range []bool{true, false} {
		t.Run(fmt.Sprintf("tunnels=%v", tunnels), func(t *testing.T) {
			l := startLineLab(t, lab.Spec{NoTunnels: !tunnels},
				lab.ClusterSpec{Name: "a", Region: "r1", Imports: imports},
				lab.ClusterSpec{Name: "b", Region: "r1", Services: []discovery.Service{lineService(t, "demo/lines", "b"), banner, closer}})
			addrs := l.Gateway("a").ImportAddrs()

			// Speaks first, before the client sends anything.
			c := dialLine(t, addrs["demo/banner:7001"])
			c.c.SetDeadline(time.Now().Add(10 * time.Second))
			if line, err := c.br.ReadString('\n'); err != nil || line != "hello from b\n" {
				t.Fatalf("banner: %q, %v", line, err)
			}

			// Answers only once it has a request of 1 MiB, more than a
			// sends ahead of the answer.
			if got := askOnce(t, addrs["demo/lines:7000"], 1<<20); got != "b" {
				t.Fatalf("a 1 MiB request answered by %q", got)
			}

			// Closes without a word.
			c = dialLine(t, addrs["demo/closer:7002"])
			c.c.SetDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.br.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("closing service: read %d bytes, %v; want EOF", n, err)
			}
		})
	}
}

// TestBytesBehindAStreamHeader: a peer gateway's stream whose first
// bytes share a frame with its header, so that b reads them with the
// header. They reach the service once and in order when b takes the
// stream, and never when it refuses it: the service, which counts every
// byte it receives, still has none after refusals for residency (the
// peer's facts allow no region of b's) and for a port b does not export.
func TestBytesBehindAStreamHeader(t *testing.T) {
	var received atomic.Int64
	svc := serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			received.Add(int64(len(line)))
			if err != nil {
				return
			}
			io.WriteString(c, "got "+line)
		}
	})
	l := startLineLab(t, lab.Spec{}, lab.ClusterSpec{Name: "b", Region: "r1", Services: []discovery.Service{serviceAt("demo/lines", "", 7000, svc, nil)}})
	cert, err := l.CA.Issue("r1", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.NewBundle(cert, l.CA.Roots())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := tunnel.Metrics{
		Tunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "peer_tunnels"}, []string{"direction"}),
		Dials:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peer_dials"}, []string{"result"}),
		Closed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peer_closed"}, []string{"reason"}),
	}
	pool := tunnel.NewPool(ctx, tunnel.Config{PerPeer: 1, Keepalive: time.Second, KeepaliveTimeout: 5 * time.Second, Connect: time.Second,
		Drain: time.Second, StreamWindowKiB: 256}, id, nil, nil, m, slog.New(slog.DiscardHandler), nil)
	defer pool.Close()
	peer := tunnel.Peer{Addr: l.Gateway("b").DataAddr(), Cluster: "b", Region: "r1"}
	// open sends the header and the payload in one write and returns the
	// answer line and what followed it.
	open := func(tg wire.Target, f wire.Facts, payload string) (string, string) {
		t.Helper()
		s, _, err := pool.Stream(ctx, peer, tg)
		if err != nil || s == nil {
			t.Fatalf("open a stream to b: %v", err)
		}
		defer s.Close()
		facts, err := wire.EncodeFacts(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(append(wire.EncodeStreamHeader(tg, facts), payload...)); err != nil {
			t.Fatalf("write header and payload: %v", err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(s)
		answer, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read the answer: %v", err)
		}
		if !strings.HasPrefix(answer, "OK") {
			return answer, ""
		}
		var reply strings.Builder
		for range strings.Count(payload, "\n") {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read the reply after %q: %v", reply.String(), err)
			}
			reply.WriteString(line)
		}
		return answer, reply.String()
	}
	lines := wire.Target{Namespace: "demo", Name: "lines", Port: 7000}

	for _, refused := range []struct {
		tg wire.Target
		f  wire.Facts
	}{
		{lines, wire.Facts{Restricted: true, Regions: []string{"r9"}}},
		{wire.Target{Namespace: "demo", Name: "lines", Port: 7001}, wire.Facts{}},
	} {
		if answer, _ := open(refused.tg, refused.f, "secret\n"); !strings.HasPrefix(answer, "ERR ") {
			t.Fatalf("%v with facts %+v answered %q, want a refusal", refused.tg, refused.f, answer)
		}
	}
	if n := received.Load(); n != 0 {
		t.Fatalf("the service received %d bytes of refused streams", n)
	}

	payload := "one\ntwo\n" + strings.Repeat("x", 3000) + "\n"
	answer, reply := open(lines, wire.Facts{}, payload)
	if answer != "OK\n" {
		t.Fatalf("answer %q", answer)
	}
	if want := "got one\ngot two\ngot " + strings.Repeat("x", 3000) + "\n"; reply != want {
		t.Fatalf("reply %.40q..., want %.40q...", reply, want)
	}
	if n := received.Load(); n != int64(len(payload)) {
		t.Fatalf("the service received %d bytes, want %d", n, len(payload))
	}
}

// TestTunnelWindowsGrowWithinPeerBudget: one bulk stream across a 20 ms
// link has its window grown on the receiving gateway, drawn from the
// sending peer's budget (tunnels.peerWindowMiB, 1 MiB here):
// strait_gateway_tunnel_window_grown_bytes shows the growth while the
// stream runs, never past the budget, and 0 once it ended;
// strait_gateway_tunnel_window_refused_total counts the growths the
// budget refused; every byte arrives.
func TestTunnelWindowsGrowWithinPeerBudget(t *testing.T) {
	const size = 24 << 20
	sink := serveTCP(t, func(c net.Conn) { // answers with the count of bytes it read
		n, _ := io.CopyN(io.Discard, c, size)
		fmt.Fprintf(c, "%d\n", n)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "r1", Imports: []gateway.Import{{Service: "bulk/sink", Port: 9000, Listen: "127.0.0.1:0"}}},
			{Name: "b", Region: "r2", Services: []discovery.Service{serviceAt("bulk/sink", "", 9000, sink, nil)}},
		},
		Tune: func(_ string, cfg *gateway.Config) {
			cfg.Tunnels.StreamWindowKiB, cfg.Tunnels.MaxStreamWindowKiB, cfg.Tunnels.PeerWindowMiB = 256, 8192, 1
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Link("a", "b").SetLatency(10*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	b := l.Gateway("b")
	fromA := map[string]string{"direction": "inbound", "peer_cluster": "a"}

	sent := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", l.Gateway("a").ImportAddrs()["bulk/sink:9000"])
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(make([]byte, size)); err != nil {
			sent <- fmt.Errorf("send: %w", err)
			return
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && line != strconv.Itoa(size)+"\n" {
			err = fmt.Errorf("the service read %q bytes of %d", strings.TrimSpace(line), size)
		}
		sent <- err
	}()
	var peak float64
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case err := <-sent:
			if err != nil {
				t.Fatalf("bulk stream: %v", err)
			}
			done = true
		case <-tick.C:
			peak = max(peak, metricValue(t, b, "strait_gateway_tunnel_window_grown_bytes", fromA))
		}
	}
	refused := metricValue(t, b, "strait_gateway_tunnel_window_refused_total", fromA)
	t.Logf("window growth peaked at %.0f bytes; %.0f growths refused", peak, refused)
	if peak == 0 {
		t.Error("no window growth seen on a stream held up by its window across a 20 ms link")
	}
	if peak > 1<<20 {
		t.Errorf("window growth peaked at %.0f bytes, past the peer's budget of 1 MiB", peak)
	}
	if refused == 0 {
		t.Error("no growth refused: a 1 MiB budget cannot grow a 256 KiB window to 8 MiB")
	}
	waitFor(t, func() bool { return metricValue(t, b, "strait_gateway_tunnel_window_grown_bytes", fromA) == 0 })
	if n := metricValue(t, l.Gateway("a"), "strait_gateway_tunnel_window_grown_bytes", map[string]string{"direction": "outbound", "peer_cluster": "b"}); n != 0 {
		t.Errorf("the sending side's windows grew by %.0f bytes", n)
	}
}
