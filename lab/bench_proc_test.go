//go:build bench

package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/benchreport"
)

// Parameters of TestBenchDataplaneProcesses.
const (
	// iperfRounds rounds, each one iperf3 run per path and stream count
	// (iperfOmit of warm-up, then iperfSeconds measured); the median
	// round counts.
	iperfRounds  = 3
	iperfSeconds = 4
	iperfOmit    = 1
	// holdStreams idle streams are held open through gateway a for
	// stream_open_rss_kib; gateway c keeps holdTunnels tunnels to b
	// (tunnels.perPeer) for tunnel_idle_rss_kib.
	holdStreams = 200
	holdTunnels = 32
)

// The caps of the gateways in TestBenchDataplaneProcesses: the defaults,
// written out so that the output states them.
const (
	procMaxStreamsPerPeer = 1024
	procStreamWindowKiB   = 4096
)

// TestBenchDataplaneProcesses (make bench-dataplane) measures the data
// plane as users deploy it: `strait gateway` processes started from
// config files (startProcFederation), gateway a importing bench/iperf,
// which gateway b exports, against an HAProxy pair in TCP mode with TLS
// 1.3 and client certificates between its two processes (haproxyPair),
// and a direct connection, in the same run. iperf3 (installed with
// apt-get when missing) drives each path with one stream and with four
// (-P 4); its server listens on 127.0.0.1 and is b's service endpoint.
// New connections (measureNewConnections) go to an echo server over
// those paths and over an HAProxy pair with plain TCP between.
//
// Before the throughput runs, on processes that have not yet carried
// bulk data, it measures resident memory (VmRSS): per idle tunnel, as
// gateway c (tunnels.perPeer holdTunnels) opens its tunnels to b, and
// per open idle stream, as holdStreams connections through a's import of
// bench/hold stay open.
//
// With STRAIT_BENCH_BASE=<git revision> it also measures gateways a and
// b built from that revision, in the same rounds. With
// STRAIT_BENCH_PERF=<dir> it then profiles gateways a and b with
// perf during one more one-stream run and writes perf.data and a report
// of each to dir.
func TestBenchDataplaneProcesses(t *testing.T) {
	iperf := aptBinary(t, "iperf3", "iperf3", "iperf3 drives the process data-plane benchmark")
	srv := iperfServer(t, iperf)
	hold := newHoldServer(t)
	echo := echoServer(t)

	ca, err := identity.NewCA("bench.local", 24*time.Hour)
	if err != nil {
		t.Fatalf("CA for haproxy: %v", err)
	}
	haAddrs, haPids := haproxyPairProcs(t, ca, srv, echo)
	ha, haEcho := haAddrs[0], haAddrs[1]
	plainAddrs, plainPids := haproxyPairProcs(t, nil, echo)
	plainEcho := plainAddrs[0]

	iperfImport, holdImportA, holdImportC, echoImport := freePort(t), freePort(t), freePort(t), freePort(t)
	imports := func(entries ...string) string {
		return "imports:\n" + strings.Join(entries, "")
	}
	importOf := func(svc, listen string) string {
		return fmt.Sprintf("  - {service: bench/%s, port: %d, listen: %q}\n", svc, benchPort, listen)
	}
	caps := fmt.Sprintf("tunnels: {maxStreamsPerPeer: %d, streamWindowKiB: %d", procMaxStreamsPerPeer, procStreamWindowKiB)
	// b checks its endpoints once a minute: a health check is a TCP connect
	// to the endpoint, and iperf3 takes every connection to its port as a
	// client of a test, one that would fail while a test sets up.
	exports := fmt.Sprintf(`services:
  - namespace: bench
    name: iperf
    ports: [{name: tcp, port: %[1]d, targetPort: %[2]s}]
    endpoints: [127.0.0.1]
  - namespace: bench
    name: hold
    ports: [{name: tcp, port: %[1]d, targetPort: %[3]s}]
    endpoints: [127.0.0.1]
  - namespace: bench
    name: echo
    ports: [{name: tcp, port: %[1]d, targetPort: %[4]s}]
    endpoints: [127.0.0.1]
health: {interval: 1m}
`, benchPort, portOf(srv), portOf(hold.addr), portOf(echo))
	healthy := func(svcs ...string) func(admin.Status) bool {
		return func(st admin.Status) bool {
			for _, s := range svcs {
				if !exportsHealthy(st, "b", "bench/"+s, benchPort) {
					return false
				}
			}
			return true
		}
	}
	fed := startProcFederation(t, buildStrait(t), []procSpec{
		{"a", "r1", caps + "}\n" + imports(importOf("iperf", iperfImport), importOf("hold", holdImportA), importOf("echo", echoImport))},
		{"b", "r1", caps + "}\n" + exports},
		{"c", "r1", caps + fmt.Sprintf(", perPeer: %d}\n", holdTunnels) + imports(importOf("hold", holdImportC))},
	}, map[string]func(admin.Status) bool{"a": healthy("iperf", "hold", "echo"), "c": healthy("hold")})

	measureTunnelMemory(t, fed, hold, holdImportC)
	measureStreamMemory(t, fed, hold, holdImportA)

	paths := []struct{ name, addr string }{{"direct", srv}, {"dataplane", iperfImport}, {"haproxy", ha}}
	// STRAIT_BENCH_BASE=<git revision>: the same pair of gateways built
	// from that revision, measured in the same rounds (dataplane_base).
	base := os.Getenv("STRAIT_BENCH_BASE")
	var baseEcho string
	var baseFed *procFederation
	if base != "" {
		baseImport := freePort(t)
		baseEcho = freePort(t)
		baseFed = startProcFederation(t, buildStraitAt(t, base), []procSpec{
			{"a", "r1", caps + "}\n" + imports(importOf("iperf", baseImport), importOf("echo", baseEcho))},
			{"b", "r1", caps + "}\n" + exports},
		}, map[string]func(admin.Status) bool{"a": healthy("iperf", "echo")})
		t.Logf("dataplane_base: gateways built from %s", base)
		paths = append(paths, struct{ name, addr string }{"dataplane_base", baseImport})
	}
	streams := []int{1, 4}
	mibs := map[string][]float64{}
	for range iperfRounds {
		for _, n := range streams {
			for _, p := range paths {
				v, err := runIperf(iperf, p.addr, n, iperfSeconds)
				if err != nil {
					t.Fatalf("%s, %d streams: %v\n%s", p.name, n, err, fed.logs())
				}
				key := fmt.Sprintf("%s_proc_%dstream", p.name, n)
				mibs[key] = append(mibs[key], v)
			}
		}
	}
	for _, n := range streams {
		thr := map[string]float64{}
		for _, p := range paths {
			key := fmt.Sprintf("%s_proc_%dstream", p.name, n)
			thr[p.name] = median(mibs[key])
			t.Logf("%s: %.0f MiB/s in rounds %.0f", key, thr[p.name], mibs[key])
			benchreport.Print(key+"_mibs", thr[p.name], "MiB/s")
		}
		benchreport.Print(fmt.Sprintf("dataplane_proc_vs_haproxy_%dstream_x", n), thr["dataplane"]/thr["haproxy"], "x")
		if base != "" {
			benchreport.Print(fmt.Sprintf("dataplane_proc_vs_base_%dstream_x", n), thr["dataplane"]/thr["dataplane_base"], "x")
		}
	}

	ncPaths := map[string]string{"direct": echo, "dataplane": echoImport, "haproxy": haEcho, "haproxy_plain": plainEcho}
	pair := func(f *procFederation) []int { return []int{f.gw["a"].cmd.Process.Pid, f.gw["b"].cmd.Process.Pid} }
	ncProcs := map[string][]int{"dataplane": pair(fed), "haproxy": haPids, "haproxy_plain": plainPids}
	if base != "" {
		ncPaths["dataplane_base"] = baseEcho
		ncProcs["dataplane_base"] = pair(baseFed)
	}
	measureNewConnections(t, ncPaths, ncProcs)

	if dir := os.Getenv("STRAIT_BENCH_PERF"); dir != "" {
		profileOneStream(t, dir, iperf, iperfImport, fed)
	}
}

// newConnPaths are the paths measureNewConnections takes, in order:
// haproxy is the HAProxy pair with TLS between (a resumed handshake per
// connection), haproxy_plain the pair with plain TCP between, what any
// path through two processes costs at the least.
var newConnPaths = []string{"direct", "dataplane", "haproxy", "haproxy_plain"}

// measureNewConnections opens a new connection per request (connect,
// 64 bytes each way, close), 500 a second for 4 s, to the echo server
// over each path in turn, three rounds, and prints each path's p99 (the
// median round's) and the ratios; dataplane_base too when paths has it
// (STRAIT_BENCH_BASE).
//
// Two more views of the same paths: the CPU time a new connection costs
// the processes of each path that has them in procs (both gateways, both
// HAProxy instances), over all rounds, less what they use idle (measured
// before, for as long as a round); and the time to the first response
// byte of serialRounds x serialConns connections made one after the
// other, each path in turn in every round (p50), where no connection
// waits behind another or behind the client's timer.
func measureNewConnections(t *testing.T, paths map[string]string, procs map[string][]int) {
	const rounds, rate, d = 3, 500, 4 * time.Second
	const serialRounds, serialConns = 5, 200
	names := newConnPaths
	if paths["dataplane_base"] != "" {
		names = append(names[:len(names):len(names)], "dataplane_base")
	}
	cpu := func(name string) time.Duration {
		used, err := cpuTime(procs[name]...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return used
	}
	idle := map[string]time.Duration{}
	for _, name := range names {
		idle[name] = cpu(name)
	}
	time.Sleep(d)
	for _, name := range names {
		idle[name] = cpu(name) - idle[name]
	}

	p99 := map[string][]float64{}
	busy, conns := map[string]time.Duration{}, map[string]int{}
	for range rounds {
		for _, name := range names {
			before := cpu(name)
			lat, failed, err := newConnections(paths[name], rate, d)
			busy[name] += cpu(name) - before - idle[name]
			conns[name] += len(lat) + failed
			if failed > 0 {
				t.Errorf("%s new connections: %d failed, first: %v", name, failed, err)
			}
			p99[name] = append(p99[name], benchreport.Percentile(lat, 0.99))
			t.Logf("%s new connections: p50 %.0f us, p90 %.0f us, p99 %.0f us", name,
				benchreport.Percentile(lat, 0.5), benchreport.Percentile(lat, 0.9), benchreport.Percentile(lat, 0.99))
		}
	}
	nc := map[string]float64{}
	for _, name := range names {
		nc[name] = median(p99[name])
		t.Logf("%s_proc_newconn_p99: %.0f us in rounds %.0f", name, nc[name], p99[name])
		benchreport.Print(name+"_proc_newconn_p99_us", nc[name], "us")
	}
	benchreport.Print("dataplane_proc_vs_direct_newconn_p99_x", nc["dataplane"]/nc["direct"], "x")
	benchreport.Print("dataplane_proc_vs_haproxy_newconn_p99_x", nc["dataplane"]/nc["haproxy"], "x")
	benchreport.Print("dataplane_proc_vs_haproxy_plain_newconn_p99_x", nc["dataplane"]/nc["haproxy_plain"], "x")
	benchreport.Print("haproxy_plain_proc_vs_direct_newconn_p99_x", nc["haproxy_plain"]/nc["direct"], "x")
	if b := nc["dataplane_base"]; b > 0 {
		benchreport.Print("dataplane_proc_vs_base_newconn_p99_x", nc["dataplane"]/b, "x")
	}

	perConn := map[string]float64{}
	for _, name := range names {
		if len(procs[name]) == 0 || conns[name] == 0 {
			continue
		}
		perConn[name] = float64(busy[name].Microseconds()) / float64(conns[name])
		t.Logf("%s: %v of CPU for %d new connections, idle use %v per %v subtracted", name, busy[name], conns[name], idle[name], d)
		benchreport.Print(name+"_proc_newconn_cpu_us", perConn[name], "us")
	}
	benchreport.Print("dataplane_proc_vs_haproxy_plain_newconn_cpu_x", perConn["dataplane"]/perConn["haproxy_plain"], "x")
	benchreport.Print("dataplane_proc_vs_haproxy_newconn_cpu_x", perConn["dataplane"]/perConn["haproxy"], "x")

	serial := map[string][]float64{}
	for range serialRounds {
		for _, name := range names {
			lat, err := serialConnections(paths[name], serialConns)
			if err != nil {
				t.Fatalf("%s connections one after the other: %v", name, err)
			}
			serial[name] = append(serial[name], lat...)
		}
	}
	sp50 := map[string]float64{}
	for _, name := range names {
		sp50[name] = benchreport.Percentile(serial[name], 0.5)
		t.Logf("%s connections one after the other: p50 %.0f us, p90 %.0f us, p99 %.0f us", name, sp50[name],
			benchreport.Percentile(serial[name], 0.9), benchreport.Percentile(serial[name], 0.99))
		benchreport.Print(name+"_proc_newconn_serial_p50_us", sp50[name], "us")
	}
	benchreport.Print("dataplane_proc_vs_direct_newconn_serial_x", sp50["dataplane"]/sp50["direct"], "x")
	benchreport.Print("haproxy_plain_proc_vs_direct_newconn_serial_x", sp50["haproxy_plain"]/sp50["direct"], "x")
	benchreport.Print("dataplane_proc_vs_haproxy_plain_newconn_serial_x", sp50["dataplane"]/sp50["haproxy_plain"], "x")
	if b := sp50["dataplane_base"]; b > 0 {
		benchreport.Print("dataplane_proc_vs_base_newconn_serial_x", sp50["dataplane"]/b, "x")
	}
}

// iperfServer runs an iperf3 server on 127.0.0.1 until the test ends and
// returns its address.
func iperfServer(t *testing.T, bin string) string {
	t.Helper()
	addr := freePort(t)
	logFile := filepath.Join(t.TempDir(), "iperf3.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatalf("iperf3 server log: %v", err)
	}
	cmd := exec.Command(bin, "-s", "-B", "127.0.0.1", "-p", portOf(addr))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start iperf3 -s: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		// A connection that sends nothing: the server logs an error and
		// waits for the next client.
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logFile)
			t.Fatalf("iperf3 server does not accept on %s after 10s: %v\n%s", addr, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runIperf runs an iperf3 client to addr with streams parallel streams
// (client to server), omitting the first iperfOmit seconds, and returns
// what the server received in MiB/s.
func runIperf(bin, addr string, streams, seconds int) (float64, error) {
	// The server serves one test at a time and says so to a client that
	// comes while another's connection (a health check's, the end of the
	// last run) is still being wound up: such a client tries again.
	for try := 1; ; try++ {
		mibs, err := runIperfOnce(bin, addr, streams, seconds)
		if err == nil || try == 3 || !strings.Contains(err.Error(), "server is busy") {
			return mibs, err
		}
		time.Sleep(time.Second)
	}
}

func runIperfOnce(bin, addr string, streams, seconds int) (float64, error) {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-c", host, "-p", port, "-P", strconv.Itoa(streams), "-t", strconv.Itoa(seconds),
		"-O", strconv.Itoa(iperfOmit), "-J", "--connect-timeout", "3000"}
	limit := time.Duration(seconds+iperfOmit)*time.Second + 20*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	command := bin + " " + strings.Join(args, " ")
	if ctx.Err() != nil {
		return 0, fmt.Errorf("%s did not finish in %s\n%s", command, limit, tail(out, 2000))
	}
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return 0, fmt.Errorf("%s: %v; its output is not iperf3's JSON (%v)\n%s", command, err, jerr, tail(out, 2000))
	}
	if res.Error != "" || err != nil || res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("%s: %v: %s", command, err, res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 8 / (1 << 20), nil
}

// holdServer accepts connections, reads each one's first byte, counts
// it, and holds the connection open (reading) until the client closes or
// the test ends.
type holdServer struct {
	addr string
	got  chan struct{} // a value for every first byte read
}

func newHoldServer(t *testing.T) *holdServer {
	h := &holdServer{got: make(chan struct{}, 4096)}
	h.addr = serveTCP(t, func(c net.Conn) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		h.got <- struct{}{}
		io.Copy(io.Discard, c)
	})
	return h
}

// await waits until n more first bytes have arrived.
func (h *holdServer) await(n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for i := range n {
		select {
		case <-h.got:
		case <-deadline:
			return fmt.Errorf("%d of %d connections reached the service in %s", i, n, timeout)
		}
	}
	return nil
}

// holdConns opens n connections to addr, each sending one byte, and
// waits until hold has read every byte. The caller closes them.
func holdConns(t *testing.T, h *holdServer, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			closeAll(conns)
			t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte{1}); err != nil {
			closeAll(conns)
			t.Fatalf("connection %d to %s: write: %v", i, addr, err)
		}
	}
	if err := h.await(n, 20*time.Second); err != nil {
		closeAll(conns)
		t.Fatalf("through %s: %v", addr, err)
	}
	return conns
}

// settledRSS is a gateway's VmRSS after a moment's quiet.
func settledRSS(t *testing.T, fed *procFederation, name string) int64 {
	t.Helper()
	time.Sleep(time.Second)
	kib, err := fed.gw[name].rssKiB()
	if err != nil {
		t.Fatalf("resident memory of gateway %s: %v", name, err)
	}
	return kib
}

// measureStreamMemory holds holdStreams idle connections open through a's
// import port for bench/hold (each a stream on a tunnel to b, and a
// connection from b to the service) and prints the growth of a's and b's
// resident memory per stream.
func measureStreamMemory(t *testing.T, fed *procFederation, h *holdServer, importAddr string) {
	t.Helper()
	// One stream first: the tunnels to b are dialled, the code paths run.
	closeAll(holdConns(t, h, importAddr, 2))
	beforeA, beforeB := settledRSS(t, fed, "a"), settledRSS(t, fed, "b")
	conns := holdConns(t, h, importAddr, holdStreams)
	defer closeAll(conns)
	afterA, afterB := settledRSS(t, fed, "a"), settledRSS(t, fed, "b")
	perB := float64(afterB-beforeB) / holdStreams
	perA := float64(afterA-beforeA) / holdStreams
	t.Logf("%d idle streams open a -> b: gateway b (accepts them) %d -> %d KiB VmRSS, %.1f KiB a stream; gateway a (import port) %d -> %d KiB, %.1f KiB a stream; "+
		"caps: tunnels.maxStreamsPerPeer %d (b holds at most %.0f KiB of idle streams from one peer), tunnels.streamWindowKiB %d (data a stream can leave buffered)",
		holdStreams, beforeB, afterB, perB, beforeA, afterA, perA, procMaxStreamsPerPeer, procMaxStreamsPerPeer*perB, procStreamWindowKiB)
	benchreport.Print("stream_open_rss_kib", perB, "KiB")
	benchreport.Print("stream_open_importer_rss_kib", perA, "KiB")
}

// measureTunnelMemory has gateway c (tunnels.perPeer holdTunnels) open its
// tunnels to b, by opening streams through its import port for bench/hold
// until its status shows them all, closes the streams and prints the
// growth of b's and c's resident memory per idle tunnel.
func measureTunnelMemory(t *testing.T, fed *procFederation, h *holdServer, importAddr string) {
	t.Helper()
	tunnels := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := admin.FetchStatus(ctx, fed.admin["c"])
		if err != nil {
			t.Fatalf("gateway c's status: %v", err)
		}
		n := 0
		for _, tu := range st.Tunnels {
			if tu.State == "open" {
				n++
			}
		}
		return n
	}
	closeAll(holdConns(t, h, importAddr, 1))
	for deadline := time.Now().Add(5 * time.Second); tunnels() < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("gateway c has no tunnel to b after a stream went through\n%s", fed.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	first := tunnels()
	beforeB, beforeC := settledRSS(t, fed, "b"), settledRSS(t, fed, "c")
	// Every stream opened while fewer than perPeer tunnels are up starts a
	// dial when none is under way.
	for deadline := time.Now().Add(30 * time.Second); tunnels() < holdTunnels; {
		if time.Now().After(deadline) {
			t.Fatalf("gateway c has %d tunnels to b after 30s of streams, want tunnels.perPeer %d\n%s", tunnels(), holdTunnels, fed.logs())
		}
		closeAll(holdConns(t, h, importAddr, 4))
		time.Sleep(5 * time.Millisecond)
	}
	n := tunnels() - first
	afterB, afterC := settledRSS(t, fed, "b"), settledRSS(t, fed, "c")
	perB := float64(afterB-beforeB) / float64(n)
	perC := float64(afterC-beforeC) / float64(n)
	t.Logf("%d more idle tunnels c -> b (tunnels.perPeer %d): gateway b (accepts them) %d -> %d KiB VmRSS, %.1f KiB a tunnel; gateway c (dials them) %d -> %d KiB, %.1f KiB a tunnel",
		n, holdTunnels, beforeB, afterB, perB, beforeC, afterC, perC)
	benchreport.Print("tunnel_idle_rss_kib", perB, "KiB")
	benchreport.Print("tunnel_idle_dialer_rss_kib", perC, "KiB")
}

// profileOneStream records gateways a and b with perf (call graphs, 999
// Hz) during one more one-stream iperf3 run through a's import port, and
// writes perf.data and a report per gateway to dir.
func profileOneStream(t *testing.T, dir, iperf, addr string, fed *procFederation) {
	t.Helper()
	perf, err := exec.LookPath("perf")
	if err != nil {
		t.Fatalf("STRAIT_BENCH_PERF is set and perf is not found: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("STRAIT_BENCH_PERF: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, name := range []string{"a", "b"} {
		data := filepath.Join(dir, "perf-"+name+".data")
		pid := strconv.Itoa(fed.gw[name].cmd.Process.Pid)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(perf, "record", "-F", "999", "-g", "-p", pid, "-o", data, "--", "sleep", strconv.Itoa(iperfSeconds)).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("perf record gateway %s: %v\n%s", name, err, tail(out, 2000))
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	streams := 1
	if v := os.Getenv("STRAIT_BENCH_PERF_STREAMS"); v != "" {
		if streams, err = strconv.Atoi(v); err != nil || streams < 1 {
			t.Fatalf("STRAIT_BENCH_PERF_STREAMS=%q: want a count of streams", v)
		}
	}
	v, err := runIperf(iperf, addr, streams, iperfSeconds)
	wg.Wait()
	if err != nil {
		t.Fatalf("profiled run: %v", err)
	}
	t.Logf("profiled run, %d streams: %.0f MiB/s (perf slows it)", streams, v)
	for i, name := range []string{"a", "b"} {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		data := filepath.Join(dir, "perf-"+name+".data")
		report := filepath.Join(dir, "report-"+name+".txt")
		out, err := exec.Command(perf, "report", "-i", data, "--no-children", "--stdio", "--sort", "sym", "-g", "none", "--percent-limit", "0.5").Output()
		if err != nil {
			t.Fatalf("perf report %s: %v", data, err)
		}
		if err := os.WriteFile(report, bytes.TrimSpace(out), 0o644); err != nil {
			t.Fatalf("write %s: %v", report, err)
		}
		t.Logf("gateway %s: %s, %s", name, data, report)
	}
}
