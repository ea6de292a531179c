//go:build linux

package lab_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/lab"
)

// idleConns opens n TCP connections to addr that never send a byte,
// spread round robin over sources loopback addresses (127.0.0.2 on; all
// of 127.0.0.0/8 is loopback on Linux), dialling from workers goroutines.
// A connection refused while it was being set up is a nil entry.
func idleConns(addr string, n, sources, workers int) []net.Conn {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				src := net.IPv4(127, 0, byte(2+i%sources/250), byte(2+i%sources%250))
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
				if c, err := d.Dial("tcp", addr); err == nil {
					conns[i] = c
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return conns
}

// closedByPeer reports whether the other end closed or reset c, without
// waiting: a non-blocking peek at the socket.
func closedByPeer(c net.Conn) bool {
	if c == nil {
		return true
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err != nil && !errors.Is(err, syscall.EAGAIN)
		return true
	})
	return closed
}

// stillOpen counts the connections the other end has not closed.
func stillOpen(conns []net.Conn) int {
	n := 0
	for _, c := range conns {
		if !closedByPeer(c) {
			n++
		}
	}
	return n
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// TestListenerBudgets floods the data, Raft and control ports of a
// gateway with idle TCP connections from several addresses: each port
// holds at most its budget, the rest are closed at once (by listener
// budget or per-source cap), the admitted ones are closed at the
// handshake deadline, every one is counted, and a new connection through
// an import port is carried meanwhile.
func TestListenerBudgets(t *testing.T) {
	const (
		budget    = 20
		perSource = 4
		flood     = 100
		sources   = 10
		deadline  = 500 * time.Millisecond
	)
	l := startLineLab(t, lab.Spec{State: true, Tune: func(cluster string, cfg *gateway.Config) {
		if cluster != "a" {
			return
		}
		cfg.Limits.HandshakeTimeout = deadline
		cfg.Limits.HandshakesPerSource = perSource
		cfg.Limits.Listeners.Data, cfg.Limits.Listeners.Raft, cfg.Limits.Listeners.Control = budget, budget, budget
	}},
		lab.ClusterSpec{Name: "a", Region: "r1", Voter: true, Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a := l.Gateway("a")
	ports := map[string]string{"data": a.DataAddr(), "raft": a.State().RaftAddr(), "control": a.ControlAddr()}
	client := dialLine(t, a.ImportAddrs()["demo/lines:7000"])
	if _, err := client.ask(3); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	held := map[string][]net.Conn{}
	for _, name := range []string{"data", "raft", "control"} {
		held[name] = idleConns(ports[name], flood, sources, 8)
		defer closeAll(held[name])
	}
	// Meanwhile a new client is carried.
	fresh := dialLine(t, a.ImportAddrs()["demo/lines:7000"])
	if cl, err := fresh.ask(5); err != nil || cl != "b" {
		t.Fatalf("new connection during the flood: %q, %v", cl, err)
	}
	// Once the gateway has accepted them (on a loaded machine the backlog
	// drains a little later), a port holds at most its budget; how many
	// were admitted at all is checked by the counts below.
	waitFor(t, func() bool {
		for _, conns := range held {
			if stillOpen(conns) > budget {
				return false
			}
		}
		return true
	})
	waitFor(t, func() bool {
		for _, conns := range held {
			if stillOpen(conns) > 0 {
				return false
			}
		}
		return true
	})
	if d := time.Since(start); d < deadline {
		t.Fatalf("every idle connection closed after %s, before the handshake deadline %s", d, deadline)
	}
	var listeners, sourced float64
	for name := range ports {
		listener := metricValue(t, a, "strait_gateway_connections_refused_total", map[string]string{"listener": name, "reason": "listener"})
		source := metricValue(t, a, "strait_gateway_connections_refused_total", map[string]string{"listener": name, "reason": "source"})
		timedOut := metricValue(t, a, "strait_gateway_handshake_timeouts_total", map[string]string{"listener": name})
		t.Logf("%s: refused %v over the budget, %v over the per-source cap, %v closed at the deadline", name, listener, source, timedOut)
		if listener+source+timedOut != flood || timedOut > budget {
			t.Errorf("%s: %v+%v refused, %v timed out; want %d in all, at most %d timed out", name, listener, source, timedOut, flood, budget)
		}
		listeners += listener
		sourced += source
	}
	// The three ports share the per-source cap: 10 sources with 4
	// handshakes each fill two budgets of 20, the third port refuses by
	// source.
	if listeners == 0 || sourced == 0 {
		t.Errorf("refused %v by listener budgets, %v by the per-source cap; want both", listeners, sourced)
	}
	if _, err := client.ask(3); err != nil {
		t.Fatalf("the first client after the flood: %v", err)
	}
}

var (
	floodConns   = flag.Int("flood.conns", 5000, "idle connections TestIdleFloodOfEveryPort opens to each port")
	floodSources = flag.Int("flood.sources", 100, "loopback addresses the flood comes from")
)

// floodEnv names the port a child process of TestIdleFloodOfEveryPort
// floods (flood, in a child process).
const floodEnv = "STRAIT_TEST_FLOOD"

// floodReport is what a flooding child tells the test, one JSON line each.
type floodReport struct {
	Port string `json:"port"`
	// Dialled, Failed: connections set up, and refused while being set up.
	Dialled, Failed int
	// DialMs is how long dialling them all took.
	DialMs float64
	// OpenAtEnd is how many the gateway had not closed when the child
	// stopped watching.
	OpenAtEnd int
	// AllClosedMs is when the last one was closed, from the first dial
	// (0 if some stayed open).
	AllClosedMs float64
}

// TestMain runs the test binary as a flood child of
// TestIdleFloodOfEveryPort when its environment names a port, and as the
// tests otherwise.
func TestMain(m *testing.M) {
	if spec := os.Getenv(floodEnv); spec != "" {
		flag.Parse()
		flood(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// flood is the child process of TestIdleFloodOfEveryPort: it opens
// -flood.conns idle connections to the port spec names (name=addr),
// holds them until the gateway has closed every one (or 20s passed) and
// reports on stdout. Each port is flooded by a process of its own, so that
// the test process's open files are the gateway's.
func flood(spec string) {
	name, addr, _ := strings.Cut(spec, "=")
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	start := time.Now()
	conns := idleConns(addr, *floodConns, *floodSources, 16)
	r := floodReport{Port: name, DialMs: ms(time.Since(start))}
	for _, c := range conns {
		if c == nil {
			r.Failed++
		} else {
			r.Dialled++
		}
	}
	defer closeAll(conns)
	// Watch the ones still open, a sweep every 100ms (the flood's own cost
	// stays small next to the gateway's).
	open := slices.DeleteFunc(slices.Clone(conns), closedByPeer)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if open = slices.DeleteFunc(open, closedByPeer); len(open) == 0 {
			r.AllClosedMs = ms(time.Since(start))
			break
		}
	}
	r.OpenAtEnd = len(open)
	b, _ := json.Marshal(r)
	fmt.Printf("FLOOD %s\n", b)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fdCount is the number of open files of this process, -1 if unknown.
func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// probe is one new connection through an import port: when it started
// and how long it took to connect, ask a line and have the answer.
type probe struct {
	at, took time.Duration
}

// probeLatencies opens new connections through an import port, one at a
// time, each asking one line and closing, until stop closes or max were
// made, and returns how long each took.
func probeLatencies(addr string, stop <-chan struct{}, max int) ([]time.Duration, error) {
	ps, err := probeTimes(addr, time.Now(), stop, max)
	ds := make([]time.Duration, len(ps))
	for i, p := range ps {
		ds[i] = p.took
	}
	return ds, err
}

func probeTimes(addr string, since time.Time, stop <-chan struct{}, max int) ([]probe, error) {
	var ps []probe
	for len(ps) < max {
		select {
		case <-stop:
			return ps, nil
		default:
		}
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return ps, err
		}
		lc := &lineConn{c: c, br: bufio.NewReader(c)}
		_, err = lc.ask(3)
		c.Close()
		if err != nil {
			return ps, err
		}
		ps = append(ps, probe{at: start.Sub(since), took: time.Since(start)})
	}
	return ps, nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// TestIdleFloodOfEveryPort is the resource test of the budgets: 5,000
// idle TCP connections (-flood.conns) from 100 loopback addresses to each
// of a gateway's ports (data, Raft, control, CONNECT, passthrough, admin)
// at once, each port flooded by a process of its own. Meanwhile new
// connections through an import port are carried within their normal
// latency; the gateway's open files stay within the sum of the flooded
// ports' budgets; what is over a budget is closed at once; and every idle
// connection is closed by its deadline (the TLS handshake deadline, the
// first-byte deadline of the CONNECT and passthrough ports, the admin
// server's header timeout).
func TestIdleFloodOfEveryPort(t *testing.T) {
	const (
		budget    = 256
		admin     = 64
		handshake = time.Second
		// timeouts.connect: the CONNECT and passthrough ports' first-byte
		// deadline, and how long a's probes through the import port wait
		// for b's answer on a machine the floods starve.
		firstByte = 5 * time.Second
		adminRead = 5 * time.Second // the admin server's ReadHeaderTimeout
	)
	l := startLineLab(t, lab.Spec{State: true, Tune: func(cluster string, cfg *gateway.Config) {
		// The floods share this machine's cores with both gateways, and
		// on a small machine dialling them starves every process for
		// seconds. The failure detectors are made patient so that a
		// starved gateway is not declared gone, nor b's starved service
		// down (its health check is a connect): what is judged here is
		// the budgets.
		cfg.Tunnels.Keepalive, cfg.Tunnels.KeepaliveTimeout = time.Second, 10*time.Second
		cfg.Gossip.ProbeInterval, cfg.Gossip.ProbeTimeout, cfg.Gossip.SuspicionMult = 2*time.Second, time.Second, 10
		cfg.Health.Timeout = 10 * time.Second
		if cluster != "a" {
			return
		}
		cfg.Timeouts.Connect = firstByte
		cfg.Limits.HandshakeTimeout = handshake
		cfg.Limits.Listeners = gateway.ListenerLimits{Data: budget, Raft: budget, Control: budget, Connect: budget, Passthrough: budget,
			Import: gateway.DefaultConfig().Limits.Listeners.Import, Admin: admin}
	}},
		lab.ClusterSpec{Name: "a", Region: "r1", Voter: true, Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a := l.Gateway("a")
	imp := a.ImportAddrs()["demo/lines:7000"]
	ports := map[string]string{"data": a.DataAddr(), "raft": a.State().RaftAddr(), "control": a.ControlAddr(),
		"connect": a.ConnectAddr(), "passthrough": a.PassthroughAddr(), "admin": a.AdminAddr()}
	sumBudgets := 5*budget + admin

	// Normal latency, and the open files of a gateway at rest.
	if _, err := probeLatencies(imp, nil, 20); err != nil { // warm up
		t.Fatal(err)
	}
	baseFDs := fdCount()
	base, err := probeLatencies(imp, nil, 200)
	if err != nil {
		t.Fatal(err)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan floodReport, len(ports))
	var children sync.WaitGroup
	start := time.Now()
	for name, addr := range ports {
		cmd := exec.Command(exe, "-test.count=1",
			fmt.Sprintf("-flood.conns=%d", *floodConns), fmt.Sprintf("-flood.sources=%d", *floodSources))
		cmd.Env = append(os.Environ(), floodEnv+"="+name+"="+addr)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children.Add(1)
		go func() {
			defer children.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "FLOOD "); ok {
					var r floodReport
					if json.Unmarshal([]byte(rest), &r) == nil {
						reports <- r
					}
				}
			}
			cmd.Wait()
		}()
	}
	// Sample the open files and probe the import port until every child
	// has reported.
	stop := make(chan struct{})
	var peakFDs atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			peakFDs.Store(max(peakFDs.Load(), int64(fdCount())))
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var probes []probe
	var probeErr error
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		probes, probeErr = probeTimes(imp, start, stop, 1<<20)
	}()
	got := map[string]floodReport{}
	timeout := time.After(40 * time.Second)
	for len(got) < len(ports) {
		select {
		case r := <-reports:
			got[r.Port] = r
		case <-timeout:
			t.Fatalf("only %d of %d flooding processes reported within 40s", len(got), len(ports))
		}
	}
	close(stop)
	sampler.Wait()
	children.Wait()
	elapsed := time.Since(start)

	t.Logf("%d idle connections to each of %d ports from %d addresses, %s in all", *floodConns, len(ports), *floodSources, elapsed.Round(time.Millisecond))
	for _, name := range []string{"data", "raft", "control", "connect", "passthrough", "admin"} {
		r := got[name]
		refused := metricValue(t, a, "strait_gateway_connections_refused_total", map[string]string{"listener": name})
		timedOut := metricValue(t, a, "strait_gateway_handshake_timeouts_total", map[string]string{"listener": name})
		t.Logf("  %-11s dialled %d (+%d reset while connecting) in %.0f ms; %v closed at once over the budget, %v at the handshake deadline; the last closed after %.0f ms (%d still open)",
			name, r.Dialled, r.Failed, r.DialMs, refused, timedOut, r.AllClosedMs, r.OpenAtEnd)
		closeBy := handshake
		switch name {
		case "admin":
			closeBy = adminRead
		case "connect", "passthrough":
			closeBy = firstByte
		}
		if r.Dialled+r.Failed != *floodConns {
			t.Errorf("%s: %d+%d connections, want %d", name, r.Dialled, r.Failed, *floodConns)
		}
		// Slots come back as deadlines pass, so a port admits its budget
		// again every deadline while the flood lasts; the rest is refused.
		if refused < float64(*floodConns)/2 {
			t.Errorf("%s: %v of %d idle connections refused over a budget of a few hundred", name, refused, *floodConns)
		}
		// The last connection opens when dialling ends and closes a
		// deadline later. A machine starved by the floods themselves shows
		// in the dialling time, and it delays the flooding process's
		// noticing of the close as much again: that is the slack.
		if r.OpenAtEnd > 0 || r.AllClosedMs > ms(closeBy)+2*r.DialMs+3000 {
			t.Errorf("%s: %d left open, the last closed after %.0f ms; want all closed by the %s deadline", name, r.OpenAtEnd, r.AllClosedMs, closeBy)
		}
	}
	peak := int(peakFDs.Load())
	t.Logf("open files: %d at rest, at most %d during the flood (+%d; budgets of the flooded ports: %d)", baseFDs, peak, peak-baseFDs, sumBudgets)
	if peak-baseFDs > sumBudgets+64 {
		t.Errorf("open files grew by %d during the flood, more than the budgets (%d)", peak-baseFDs, sumBudgets)
	}
	if probeErr != nil {
		t.Fatalf("a new connection through the import port failed during the flood: %v", probeErr)
	}
	// While the floods are being dialled, and once they are all open.
	var dialled time.Duration
	for _, r := range got {
		dialled = max(dialled, time.Duration(r.DialMs*float64(time.Millisecond)))
	}
	var opening, held []time.Duration
	for _, p := range probes {
		if p.at < dialled {
			opening = append(opening, p.took)
		} else {
			held = append(held, p.took)
		}
	}
	during := append(slices.Clone(opening), held...)
	lat := func(ds []time.Duration) string {
		return fmt.Sprintf("p50 %s p99 %s max %s (%d)", percentile(ds, 0.5).Round(time.Microsecond), percentile(ds, 0.99).Round(time.Microsecond),
			percentile(ds, 1).Round(time.Microsecond), len(ds))
	}
	t.Logf("new connections through the import port: at rest %s; while the floods were dialled (%s) %s; then %s", lat(base), dialled.Round(time.Millisecond), lat(opening), lat(held))
	if len(held) < 10 {
		t.Fatalf("only %d connections through the import port once the floods were open", len(held))
	}
	// Dialling 30,000 connections at once loads a small machine (its
	// tail is reported, not judged); holding them must not slow the
	// gateway down.
	if p50, b := percentile(held, 0.5), percentile(base, 0.5); p50 > 3*b+5*time.Millisecond {
		t.Errorf("median new connection took %s during the flood, %s at rest", p50, b)
	}
	if p50, b := percentile(during, 0.5), percentile(base, 0.5); p50 > 5*b+10*time.Millisecond {
		t.Errorf("median new connection took %s while the floods were dialled and held, %s at rest", p50, b)
	}
}
