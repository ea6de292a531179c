package lab_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/lab"
)

// TestProxyForwardsOnlyWhatItMay: on the CONNECT port's absolute-form
// path the gateway forwards a request without its hop-by-hop fields, the
// fields its Connection header names, and any X-Strait-* field the client
// sent; the rest arrives as sent.
func TestProxyForwardsOnlyWhatItMay(t *testing.T) {
	l := twoClusters(t)
	a := l.Gateway("a")
	h := http.Header{
		"Connection":                {"x-private"},
		"X-Private":                 {"1"},
		"Keep-Alive":                {"timeout=5"},
		"Upgrade":                   {"websocket"},
		"Te":                        {"trailers"},
		"Proxy-Authorization":       {"Basic eDp5"},
		"X-Strait-Cluster":          {"us-east-1"},
		"X-Strait-Source-Namespace": {"payments"},
		"X-Kept":                    {"yes"},
	}
	resp, r := viaProxy(t, a.ConnectAddr(), "http://ledger.demo.svc.clusterset.local:8080/headers", h)
	if resp.StatusCode != http.StatusOK || r.Cluster != "b" {
		t.Fatalf("%s, served by %q", resp.Status, r.Cluster)
	}
	if r.Headers.Get("X-Kept") != "yes" {
		t.Errorf("X-Kept did not arrive: %v", r.Headers)
	}
	for _, name := range []string{"X-Private", "Keep-Alive", "Upgrade", "Te", "Proxy-Authorization", "X-Strait-Cluster", "X-Strait-Source-Namespace"} {
		if vs, ok := r.Headers[name]; ok {
			t.Errorf("%s forwarded: %q", name, vs)
		}
	}
}

// TestProxyBoundsTheRequestHead: a request head over 64 KiB, or with more
// than 100 fields, is answered 431 and not forwarded; one just under the
// limits is carried.
func TestProxyBoundsTheRequestHead(t *testing.T) {
	l := twoClusters(t)
	a := l.Gateway("a")
	send := func(t *testing.T, fields []string) int {
		t.Helper()
		// Made before dialling: building 64 MiB on a loaded machine can
		// take longer than the gateway waits for a first byte.
		head := []byte("GET http://ledger.demo.svc.clusterset.local:8080/ HTTP/1.1\r\nHost: ledger.demo.svc.clusterset.local:8080\r\nConnection: close\r\n" +
			strings.Join(fields, "") + "\r\n")
		c, err := net.DialTimeout("tcp", a.ConnectAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go c.Write(head) // an oversized head may be refused before it is all written
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	many := func(n, size int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("X-F%d: %s\r\n", i, strings.Repeat("v", size)))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		fields []string
		want   int
	}{
		{"97 small fields", many(97, 10), http.StatusOK},
		{"101 fields", many(101, 10), http.StatusRequestHeaderFieldsTooLarge},
		{"a 60 KiB field", many(1, 60<<10), http.StatusOK},
		{"a 70 KiB field", many(1, 70<<10), http.StatusRequestHeaderFieldsTooLarge},
		{"64 MiB of fields", many(64, 1<<20), http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := send(t, tc.fields); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}

// TestProxyKeepsTheConnectionAndRoutesEachRequest: one keep-alive client
// connection to eu-west-1's proxy port carries requests to three services
// served in three clusters, each routed on its own merits: an EU-marked
// request to demo/profile stays in the EU, and a refused one ends the
// connection without touching the others. Pipelined requests are answered
// in order.
func TestProxyKeepsTheConnectionAndRoutesEachRequest(t *testing.T) {
	_, d, info := startDev(t, lab.Spec{})
	proxy := info["eu-west-1"].Connect
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	ask := func(t *testing.T, svc, extra string) (*http.Response, lab.Reply) {
		t.Helper()
		fmt.Fprintf(c, "GET http://%s.demo.svc.clusterset.local:8080/ HTTP/1.1\r\nHost: %s\r\n%s\r\n", svc, svc, extra)
		return readReply(t, br)
	}
	for _, tc := range []struct {
		svc, extra, region string
	}{
		{"echo", "", "eu-west"},
		{"ledger", "", "eu-west"},
		{"profile", "X-Data-Residency: EU\r\n", "eu-central"},
		{"echo", "", "eu-west"},
	} {
		resp, r := ask(t, tc.svc, tc.extra)
		if resp.StatusCode != http.StatusOK || r.Region != tc.region || r.Service != "demo/"+tc.svc || resp.Close {
			t.Fatalf("%s: %s from %s (%s), close %v; want 200 from %s on a kept connection", tc.svc, resp.Status, r.Cluster, r.Region, resp.Close, tc.region)
		}
		if resp.Header.Get("X-Strait-Cluster") != r.Cluster {
			t.Errorf("X-Strait-Cluster %q, served by %q", resp.Header.Get("X-Strait-Cluster"), r.Cluster)
		}
	}

	if n := metricValue(t, d.Gateway("eu-west-1"), "strait_gateway_http_requests_total", map[string]string{"service": "demo/profile:8080", "destination_cluster": "eu-central-1", "code": "200"}); n != 1 {
		t.Errorf("strait_gateway_http_requests_total for profile in eu-central-1: %v, want 1", n)
	}

	// Pipelined: three requests in one write, answered in order.
	fmt.Fprint(c, "GET http://ledger.demo.svc.clusterset.local:8080/a HTTP/1.1\r\nHost: l\r\n\r\n"+
		"GET http://profile.demo.svc.clusterset.local:8080/b HTTP/1.1\r\nHost: p\r\nX-Data-Residency: eu\r\n\r\n"+
		"GET http://echo.demo.svc.clusterset.local:8080/c HTTP/1.1\r\nHost: e\r\n\r\n")
	for _, want := range []struct{ svc, path string }{{"demo/ledger", "/a"}, {"demo/profile", "/b"}, {"demo/echo", "/c"}} {
		resp, r := readReply(t, br)
		if resp.StatusCode != http.StatusOK || r.Service != want.svc || r.Path != want.path {
			t.Fatalf("pipelined: %s %s %s, want %s %s", resp.Status, r.Service, r.Path, want.svc, want.path)
		}
	}

	// A refused request answers and closes: its body may be unread.
	resp, _ := ask(t, "profile", "X-Data-Residency: eu, us\r\n")
	if resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Fatalf("conflicting marker: %s, close %v; want 400 and close", resp.Status, resp.Close)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("connection still open after a refusal")
	}
}

func readReply(t *testing.T, br *bufio.Reader) (*http.Response, lab.Reply) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	var r lab.Reply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
	}
	return resp, r
}

// TestProxyRefusesSmuggling: request smuggling probes on the proxy port.
// A head HTTP/1.1 lets a recipient reject is answered 400 and the
// connection closed, never forwarded; a well-framed pipeline is split
// where its framing says, each request routed on its own merits.
func TestProxyRefusesSmuggling(t *testing.T) {
	_, _, info := startDev(t, lab.Spec{})
	proxy := info["eu-west-1"].Connect
	const echo = "http://echo.demo.svc.clusterset.local:8080"
	const profile = "http://profile.demo.svc.clusterset.local:8080"
	hidden := "GET " + profile + "/ HTTP/1.1\r\nHost: p\r\nX-Data-Residency: us\r\n\r\n"
	for _, tc := range []struct {
		name string
		raw  string
		want []answer // in order; the connection must close after the last
	}{
		{"Content-Length and Transfer-Encoding",
			"POST " + echo + "/ HTTP/1.1\r\nHost: e\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET " + profile + "/ HTTP/1.1\r\nHost: p\r\n\r\n",
			[]answer{{status: 400}}},
		{"two different Content-Lengths",
			"POST " + echo + "/ HTTP/1.1\r\nHost: e\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
			[]answer{{status: 400}}},
		{"obs-fold",
			"GET " + profile + "/ HTTP/1.1\r\nHost: p\r\nX-Data-Residency: us\r\n eu\r\n\r\n",
			[]answer{{status: 400}}},
		{"bare LF",
			"GET " + echo + "/ HTTP/1.1\nHost: e\n\n",
			[]answer{{status: 400}}},
		{"white space before a colon",
			"GET " + echo + "/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding : chunked\r\n\r\n",
			[]answer{{status: 400}}},
		{"a transfer coding other than chunked",
			"POST " + echo + "/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
			[]answer{{status: 400}}},
		{"oversize chunk size",
			"POST " + echo + "/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n",
			[]answer{{status: 502}}},
		{"a request hidden in a body is that body",
			"POST " + echo + "/ HTTP/1.1\r\nHost: e\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(hidden)) + hidden +
				"GET " + profile + "/ HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
			[]answer{{status: 200, service: "demo/echo"}, {status: 200, service: "demo/profile"}}},
		{"a pipelined request after a chunked body with trailers",
			"POST " + echo + "/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n" +
				"GET " + profile + "/ HTTP/1.1\r\nHost: p\r\nX-Data-Residency: eu\r\nConnection: close\r\n\r\n",
			[]answer{{status: 200, service: "demo/echo"}, {status: 200, service: "demo/profile"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { sendProbe(t, proxy, tc.raw, tc.want) })
	}
}

// answer is what a probe expects back, in order.
type answer struct {
	status  int
	service string // the demo service that answered 200, when set
	path    string // the path it saw, when set
}

// sendProbe writes raw to addr at once and checks the answers in order;
// the connection must close after the last.
func sendProbe(t *testing.T, addr, raw string, want []answer) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, w := range want {
		resp, r := readReply(t, br)
		if resp.StatusCode != w.status || r.Service != w.service && w.service != "" || r.Path != w.path && w.path != "" ||
			w.status != http.StatusOK && r.Service != "" {
			t.Fatalf("answer %d: %s from %q for %q, want %+v", i+1, resp.Status, r.Service, r.Path, w)
		}
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("connection open after the last answer")
	}
}

// breakingService accepts HTTP requests, reads each head, and closes the
// connection without an answer: an upstream that breaks after the
// request reached it. It counts the requests it swallowed.
func breakingService(t *testing.T) (addr string, swallowed func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
	}()
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestProxyRetriesIdempotentRequestsOnce: the first cluster (same zone)
// takes requests and breaks before answering. An idempotent request is
// sent once more to the next allowed cluster and answered there; a POST
// is not sent twice (502); the retry is counted.
func TestProxyRetriesIdempotentRequestsOnce(t *testing.T) {
	addr, swallowed := breakingService(t)
	broken := serviceAt("demo/api", "http", 8080, addr, nil)
	healthy := startDemo(t, "demo/api", "c", "eu-west", nil)
	l := startLab(t,
		lab.ClusterSpec{Name: "a", Region: "eu-west", Zone: "z1"},
		lab.ClusterSpec{Name: "b", Region: "eu-west", Zone: "z1", Services: []discovery.Service{broken}},
		lab.ClusterSpec{Name: "c", Region: "eu-west", Zone: "z2", Services: []discovery.Service{healthy}},
	)
	a := l.Gateway("a")
	const url = "http://api.demo.svc.clusterset.local:8080/"
	// POST first: b fails fewer times than outlier ejection needs, so it
	// stays first in line for every request of the test.
	before := swallowed()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("payload"))
	if resp, r := proxyDo(t, a.ConnectAddr(), req); resp.StatusCode != http.StatusBadGateway || r.Cluster != "" {
		t.Fatalf("POST: %s served by %q; want 502, never sent twice", resp.Status, r.Cluster)
	}
	if swallowed() != before+1 {
		t.Errorf("POST reached b %d times, want once", swallowed()-before)
	}
	for _, method := range []string{http.MethodPut, http.MethodGet} {
		before := swallowed()
		req, _ := http.NewRequest(method, url, strings.NewReader("payload"))
		resp, r := proxyDo(t, a.ConnectAddr(), req)
		if resp.StatusCode != http.StatusOK || r.Cluster != "c" || r.Method != method {
			t.Fatalf("%s: %s served by %q; want 200 from c after a retry", method, resp.Status, r.Cluster)
		}
		if swallowed() != before+1 {
			t.Errorf("%s: b swallowed %d requests, want 1", method, swallowed()-before)
		}
	}
	if n := metricValue(t, a, "strait_gateway_http_retries_total", map[string]string{"service": "demo/api:8080", "result": "retried"}); n != 2 {
		t.Errorf("retries counted %v, want 2", n)
	}
}

func proxyDo(t *testing.T, proxy string, req *http.Request) (*http.Response, lab.Reply) {
	t.Helper()
	pu, _ := url.Parse("http://" + proxy)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", req.Method, req.URL, proxy, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	var r lab.Reply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("decode reply %q: %v", body, err)
		}
	}
	return resp, r
}
