//go:build bench

package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/benchreport"
)

// TestBenchL7 (make bench-l7) measures HTTP through real `strait gateway`
// processes against, in the same run, a direct baseline and an HAProxy
// pair in HTTP mode set up the same way: h2c in, HTTP/2 over mutual TLS
// between the two, HTTP/1.1 to the service. h2load (nghttp2-client,
// installed with apt-get when missing) loads each path with the same
// parameters. Then, under keep-alive HTTP/2 load of GETs through the
// client gateway, the preferred cluster's gateway process is killed
// (SIGKILL: no drain, no gossip leave) and the fallback cluster must take
// every request.
//
// The federation: gateway c1 (region r1) imports bench/echo:8080 on a
// local port, where the load enters; c2 (r1, preferred: the same region)
// exports it from service instance A, c3 (r2) from instance B. The
// service speaks HTTP/1.1 only and declares its port protocol: http, so
// c1 knows from the catalog that the import port carries HTTP.
func TestBenchL7(t *testing.T) {
	h2load := aptBinary(t, "h2load", "nghttp2-client", "h2load generates the load")
	svcA, svcB := httpInstance(t, "A"), httpInstance(t, "B")

	runs := map[string]h2loadRun{}
	runs["direct"] = runH2load(t, h2load, "direct", svcA, true)
	runs["haproxy"] = runH2load(t, h2load, "haproxy", haproxyHTTPPair(t, svcA), false)

	fed := startL7Federation(t, svcA, svcB)
	// The gateways route at all (at L4 an HTTP/1.1 request crosses them
	// byte for byte), to A.
	for i := range 5 {
		if who, err := h1Instance(fed.importAddr); err != nil || who != "A" {
			t.Fatalf("HTTP/1.1 GET %d through c1's import port %s: answered by %q (%v), want instance A (c2, c1's region)\n%s",
				i, fed.importAddr, who, err, fed.logs())
		}
	}
	h2cOK := true
	if who, err := h2cInstance(fed.importAddr); err != nil || who != "A" {
		h2cOK = false
		t.Errorf("h2c GET through c1's import port %s: answered by %q (%v), want instance A: the import port does not serve HTTP/2 "+
			"(an L4 import port cannot: the service speaks HTTP/1.1 only)", fed.importAddr, who, err)
	}
	runs["strait"] = runH2load(t, h2load, "strait", fed.importAddr, false)

	for _, name := range []string{"direct", "haproxy", "strait"} {
		r := runs[name]
		benchreport.Print("l7_"+name+"_rps", r.rps, "req/s")
		if len(r.lat) > 0 {
			benchreport.Print("l7_"+name+"_p99_ms", benchreport.Percentile(r.lat, 0.99)/1000, "ms")
		}
		if r.total > 0 { // none: no connection got as far as a request
			benchreport.Print("l7_"+name+"_failed_requests", float64(r.failed()), "requests")
		}
	}
	ha, st := runs["haproxy"], runs["strait"]
	if ha.rps > 0 {
		benchreport.Print("l7_rps_vs_haproxy_x", st.rps/ha.rps, "x")
	}
	if len(ha.lat) > 0 && len(st.lat) > 0 {
		benchreport.Print("l7_p99_vs_haproxy_x", benchreport.Percentile(st.lat, 0.99)/benchreport.Percentile(ha.lat, 0.99), "x")
	}

	if !h2cOK {
		t.Errorf("failover not measured: it needs h2c through c1's import port")
		return
	}
	killAt, reqs, err := h2cFailoverLoad(fed.importAddr, fed.gw["c2"].kill)
	if err != nil {
		t.Fatalf("kill c2's gateway: %v", err)
	}
	reportL7Failover(t, killAt, reqs)
}

// l7Body is the service's answer to every GET, msgSize bytes.
var l7Body = bytes.Repeat([]byte("s"), msgSize)

// instanceHeader names the service instance that answered.
const instanceHeader = "X-Bench-Instance"

// httpInstance starts an instance of the benchmark service: HTTP/1.1 only
// (no h2c), answering every GET with l7Body and instanceHeader: name. It
// returns its address; the test closes it when it ends.
func httpInstance(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for service instance %s: %v", name, err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	srv := &http.Server{Protocols: &protos, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set(instanceHeader, name)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(l7Body)))
		w.Write(l7Body)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// h2load parameters, the same for every path: 16 connections, 8 streams
// each (for HTTP/1.1, 8 pipelined requests), 1 s of warm-up, then 5 s
// measured.
const (
	h2loadClients  = 16
	h2loadStreams  = 8
	h2loadWarmUp   = time.Second
	h2loadDuration = 5 * time.Second
)

// h2loadRun is what one h2load run measured.
type h2loadRun struct {
	// rps is requests answered 2xx per second of the measured period
	// (h2load's own req/s counts any complete answer, 5xx too).
	rps float64
	// From h2load's summary: requests in the measured period, streams
	// that failed, and answers by class.
	total, succeeded, failedStreams, errored, timeout int
	status2xx, status5xx                              int
	// lat are the latencies of the 2xx answers in microseconds, from
	// h2load's per-request log.
	lat []float64
}

// failed counts requests that did not get an answer, or got a 5xx.
func (r h2loadRun) failed() int { return r.failedStreams + r.status5xx }

var (
	h2loadRequests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadStatus   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// runH2load loads http://addr/ with h2load: HTTP/1.1 when h1, else HTTP/2
// with prior knowledge (h2c). A run that fails or has failed requests is
// reported with t.Errorf and h2load's output; whatever it measured is
// returned.
func runH2load(t *testing.T, bin, name, addr string, h1 bool) h2loadRun {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "h2load-"+name+".tsv")
	args := []string{"-c", strconv.Itoa(h2loadClients), "-m", strconv.Itoa(h2loadStreams), "-t", "1",
		"--warm-up-time", fmt.Sprintf("%ds", int(h2loadWarmUp.Seconds())), "-D", fmt.Sprintf("%ds", int(h2loadDuration.Seconds())),
		"--log-file", logFile}
	if h1 {
		args = append(args, "--h1")
	}
	args = append(args, "http://"+addr+"/")
	ctx, cancel := context.WithTimeout(context.Background(), h2loadWarmUp+h2loadDuration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	command := bin + " " + strings.Join(args, " ")
	out = withoutProgress(out)
	if ctx.Err() != nil {
		t.Errorf("%s: h2load did not finish in %s: %s\n%s", name, h2loadWarmUp+h2loadDuration+30*time.Second, command, tail(out, 2000))
		return h2loadRun{}
	}
	var r h2loadRun
	m := h2loadRequests.FindSubmatch(out)
	s := h2loadStatus.FindSubmatch(out)
	if m == nil || s == nil {
		t.Errorf("%s: no summary in h2load's output (%v): %s\n%s", name, err, command, tail(out, 2000))
		return r
	}
	atoi := func(b []byte) int { n, _ := strconv.Atoi(string(b)); return n }
	r.total, r.succeeded, r.failedStreams, r.errored, r.timeout = atoi(m[1]), atoi(m[4]), atoi(m[5]), atoi(m[6]), atoi(m[7])
	r.status2xx, r.status5xx = atoi(s[1]), atoi(s[4])
	r.lat, err = h2loadLatencies(logFile)
	if err != nil {
		t.Errorf("%s: %v", name, err)
	}
	r.rps = float64(len(r.lat)) / h2loadDuration.Seconds()
	t.Logf("%s: h2load: %s; %s; %s", name, h2loadLine(out, "finished in "), m[0], s[0])
	if r.failed() > 0 || r.status2xx == 0 || len(r.lat) == 0 {
		t.Errorf("%s: %d requests succeeded with 2xx, %d failed, %d 5xx, %d timed out: %s\n%s",
			name, r.status2xx, r.failedStreams, r.status5xx, r.timeout, command, tail(out, 2000))
	}
	return r
}

// withoutProgress drops h2load's progress lines from its output.
func withoutProgress(out []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("progress: ")) {
			b.Write(line)
		}
	}
	return b.Bytes()
}

// h2loadLine is the line of out that starts with prefix.
func h2loadLine(out []byte, prefix string) string {
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// h2loadLatencies reads h2load's per-request log (--log-file: start in µs
// since the epoch, status or -1 for a failed stream, µs until the end of
// the response; one line per request of the measured period) and returns
// the latencies of the 2xx answers in microseconds.
func h2loadLatencies(file string) ([]float64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("h2load's request log: %w", err)
	}
	defer f.Close()
	var lat []float64
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 3 {
			return lat, fmt.Errorf("%s:%d: want 3 tab-separated columns, found %q", file, line, sc.Text())
		}
		status, err1 := strconv.Atoi(cols[1])
		us, err2 := strconv.ParseFloat(cols[2], 64)
		if err1 != nil || err2 != nil {
			return lat, fmt.Errorf("%s:%d: want a status and microseconds, found %q", file, line, sc.Text())
		}
		if status >= 200 && status < 300 {
			lat = append(lat, us)
		}
	}
	if err := sc.Err(); err != nil {
		return lat, fmt.Errorf("read %s: %w", file, err)
	}
	return lat, nil
}

// haproxyHTTPPair starts HAProxy A and B in HTTP mode in front of server
// and returns A's address: A takes h2c, carries each request over HTTP/2
// in TLS 1.3 with a client certificate to B, B requires a certificate of
// the same CA and forwards over HTTP/1.1 (keep-alive) to server. Both are
// killed when the test ends.
func haproxyHTTPPair(t *testing.T, server string) string {
	t.Helper()
	bin := haproxyBinary(t)
	ca, err := identity.NewCA("bench.local", 24*time.Hour)
	if err != nil {
		t.Fatalf("CA for haproxy: %v", err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatalf("write CA for haproxy: %v", err)
	}
	pemA, pemB := haproxyCert(t, ca, dir, "haproxy-a"), haproxyCert(t, ca, dir, "haproxy-b")
	const global = `global
	nbthread 2

defaults
	mode http
	timeout connect 3s
	timeout client 60s
	timeout server 60s
	timeout http-keep-alive 60s
`
	a, b := freePort(t), freePort(t)
	cfgB := global + fmt.Sprintf(`
frontend in
	bind %s ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.3 alpn h2
	default_backend out

backend out
	server s %s
`, b, pemB, caFile, server)
	cfgA := global + fmt.Sprintf(`
frontend in
	bind %s proto h2
	default_backend out

backend out
	server b %s ssl verify required ca-file %s crt %s ssl-min-ver TLSv1.3 alpn h2
`, a, b, caFile, pemA)
	startHAProxy(t, bin, dir, "b", cfgB, []string{b})
	startHAProxy(t, bin, dir, "a", cfgA, []string{a})
	if who, err := h2cInstance(a); err != nil || who == "" {
		out, _ := os.ReadFile(filepath.Join(dir, "a.log"))
		t.Fatalf("h2c GET through the HAProxy pair %s: answered by %q (%v)\n%s", a, who, err, out)
	}
	return a
}

// l7Federation is three `strait gateway` processes: c1 imports
// bench/echo:8080 at importAddr, c2 and c3 export it.
type l7Federation struct {
	*procFederation
	importAddr string
}

// startL7Federation starts gateways c1, c2 and c3 (startProcFederation)
// and waits until c1's catalog shows bench/echo healthy in c2 and c3.
func startL7Federation(t *testing.T, svcA, svcB string) *l7Federation {
	t.Helper()
	importAddr := freePort(t)
	exports := func(svc string) string {
		return fmt.Sprintf(`services:
  - namespace: bench
    name: echo
    ports: [{name: http, port: 8080, targetPort: %s, protocol: http}]
    endpoints: [127.0.0.1]
`, portOf(svc))
	}
	// A short connect timeout, as a user who wants fast failover sets it;
	// tunnels keep their defaults (a dead peer is noticed within
	// keepaliveTimeout, 500 ms, or at once when its socket resets).
	const timeouts = "timeouts: {connect: 1s, budget: 2s, drain: 1s}\n"
	fed := startProcFederation(t, buildStrait(t), []procSpec{
		{"c1", "r1", timeouts + fmt.Sprintf("imports:\n  - {service: bench/echo, port: 8080, listen: %q}\n", importAddr)},
		{"c2", "r1", timeouts + exports(svcA)},
		{"c3", "r2", timeouts + exports(svcB)},
	}, map[string]func(admin.Status) bool{
		"c1": func(st admin.Status) bool {
			return exportsHealthy(st, "c2", "bench/echo", 8080) && exportsHealthy(st, "c3", "bench/echo", 8080)
		},
	})
	return &l7Federation{procFederation: fed, importAddr: importAddr}
}

// h1Instance makes one HTTP/1.1 GET to addr on a new connection and
// returns the instance that answered.
func h1Instance(addr string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return getInstance(c, addr, 1)
}

// h2cInstance makes one h2c GET (HTTP/2 with prior knowledge) to addr and
// returns the instance that answered.
func h2cInstance(addr string) (string, error) {
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	return getInstance(&http.Client{Timeout: 5 * time.Second, Transport: tr}, addr, 2)
}

// getInstance makes a GET to addr with c, checks the answer (200, l7Body,
// over HTTP/major) and returns the instance that answered.
func getInstance(c *http.Client, addr string, major int) (string, error) {
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, l7Body) || resp.ProtoMajor != major {
		return "", fmt.Errorf("answer %s %s with %d bytes: %.200q", resp.Proto, resp.Status, len(body), body)
	}
	return resp.Header.Get(instanceHeader), nil
}

// h2cTransport speaks only HTTP/2 with prior knowledge over plain TCP
// (h2c): one connection to a host, more only when the server limits
// concurrent streams.
func h2cTransport() *http.Transport {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &protos}
}

// l7Request is one request of the failover load.
type l7Request struct {
	start, end time.Time
	instance   string
	err        error // a transport error or an answer other than 200 with l7Body
}

// Failover load: l7Conns HTTP/2 connections, l7Streams workers on each,
// each worker a GET every l7Pace (later when the last is slow), for
// l7Warm before the kill and l7After after it; each request may take
// l7Timeout.
const (
	l7Conns, l7Streams = 4, 4
	l7Pace             = 5 * time.Millisecond
	l7Warm, l7After    = time.Second, 3 * time.Second
	l7Timeout          = 5 * time.Second
)

// h2cFailoverLoad runs the failover load against addr and calls kill
// after l7Warm. It returns when kill was called and every request.
func h2cFailoverLoad(addr string, kill func() error) (time.Time, []l7Request, error) {
	workers := l7Conns * l7Streams
	n := int((l7Warm + l7After) / l7Pace)
	reqs := make([][]l7Request, workers)
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(l7Warm + l7After)
	var wg sync.WaitGroup
	for c := range l7Conns {
		// One transport per connection: each keeps one connection to
		// addr for its workers' streams (and dials anew if it breaks).
		tr := h2cTransport()
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		for s := range l7Streams {
			w := c*l7Streams + s
			first := start.Add(time.Duration(w) * l7Pace / time.Duration(workers))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					at := first.Add(time.Duration(i) * l7Pace)
					if at.After(end) {
						return
					}
					time.Sleep(time.Until(at))
					reqs[w] = append(reqs[w], timedGet(client, addr))
				}
			}()
		}
	}
	time.Sleep(time.Until(start.Add(l7Warm)))
	killAt := time.Now()
	err := kill()
	wg.Wait()
	var all []l7Request
	for _, rs := range reqs {
		all = append(all, rs...)
	}
	return killAt, all, err
}

func timedGet(client *http.Client, addr string) l7Request {
	r := l7Request{start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), l7Timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	resp, err := client.Do(req)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		r.instance = resp.Header.Get(instanceHeader)
		if err == nil && (resp.StatusCode != http.StatusOK || !bytes.Equal(body, l7Body)) {
			err = fmt.Errorf("answer %s from %q with %d bytes: %.200q", resp.Status, r.instance, len(body), body)
		}
	}
	r.end, r.err = time.Now(), err
	return r
}

// reportL7Failover prints the failover figures: requests that failed in
// the whole run (l7_failover_failed_requests); the slowest successful
// request that was in flight at the kill or started in the 2 s after it
// (l7_failover_ms: what a client feels); the time from the kill until the
// first answer from instance B (l7_failover_first_fallback_ms); and the
// requests each instance served. Before the kill every request must be
// served by A, after it none.
func reportL7Failover(t *testing.T, killAt time.Time, reqs []l7Request) {
	t.Helper()
	var (
		failed, servedA, servedB, warmNotA, afterA int
		worst                                      time.Duration
		fallback                                   time.Time
		firstErr                                   error
		warmMs                                     []float64
	)
	for _, r := range reqs {
		switch r.instance {
		case "A":
			servedA++
		case "B":
			servedB++
		}
		if r.err != nil {
			failed++
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		if r.end.Before(killAt) {
			warmMs = append(warmMs, benchreport.Ms(r.end.Sub(r.start)))
			if r.instance != "A" {
				warmNotA++
			}
			continue
		}
		if r.start.After(killAt) && r.instance == "A" {
			afterA++
		}
		if r.instance == "B" && (fallback.IsZero() || r.end.Before(fallback)) {
			fallback = r.end
		}
		if r.start.Sub(killAt) < 2*time.Second {
			worst = max(worst, r.end.Sub(r.start))
		}
	}
	if warmNotA > 0 {
		t.Errorf("%d requests before the kill were not served by A (c2, c1's region)", warmNotA)
	}
	if afterA > 0 {
		t.Errorf("%d requests started after c2's gateway was killed were served by A", afterA)
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed, first: %v", failed, len(reqs), firstErr)
	}
	if p99 := benchreport.Percentile(warmMs, 0.99); p99 > 100 {
		t.Logf("requests before the kill took up to %.0f ms (p99): the machine is overloaded, the figures measure that too", p99)
	}
	benchreport.Print("l7_failover_failed_requests", float64(failed), "requests")
	benchreport.Print("l7_failover_ms", benchreport.Ms(worst), "ms")
	if fallback.IsZero() {
		t.Errorf("no request after the kill was served by B (c3)")
	} else {
		benchreport.Print("l7_failover_first_fallback_ms", benchreport.Ms(fallback.Sub(killAt)), "ms")
	}
	benchreport.Print("l7_failover_served_a_requests", float64(servedA), "requests")
	benchreport.Print("l7_failover_served_b_requests", float64(servedB), "requests")
}
