package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/lab"
)

// euOnlyMarked keeps requests marked x-data-residency: eu in r1 and r3.
const euOnlyMarked = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: marked}
spec:
  regions: [r1, r2, r3]
  classes:
    - name: marked
      allowedRegions: [r1, r3]
      match:
        headers:
          - {name: x-data-residency, value: eu}
  default: allow
`

// httpService is a demo service in cluster whose port 8080 speaks proto.
func httpService(t *testing.T, key, cluster, region, proto string) discovery.Service {
	t.Helper()
	s := startDemo(t, key, cluster, region, nil)
	s.Ports[0].Protocol = proto
	return s
}

// httpLab: a (r3) imports demo/profile, served by b (r2) and c (r1), both
// beyond a's region and so balanced. Unmarked requests may go to either;
// marked ones only to c.
func httpLab(t *testing.T, proto string) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "r3", Imports: []gateway.Import{{Service: "demo/profile", Port: 8080, Listen: "127.0.0.1:0"}}},
			{Name: "b", Region: "r2", Services: []discovery.Service{httpService(t, "demo/profile", "b", "r2", proto)}},
			{Name: "c", Region: "r1", Services: []discovery.Service{httpService(t, "demo/profile", "c", "r1", proto)}},
		},
		Policy:   []byte(euOnlyMarked),
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Health:   gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// TestImportPortRoutesEachHTTP1Request: on one keep-alive HTTP/1.1
// connection to an import port, marked and unmarked requests alternate;
// each is routed on its own, so marked ones are served in r1 only while
// unmarked ones spread over both clusters, and the connection stays open.
func TestImportPortRoutesEachHTTP1Request(t *testing.T) {
	l := httpLab(t, "http")
	addr := l.Gateway("a").ImportAddrs()["demo/profile:8080"]
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	served := map[string]int{}
	for i := range 40 {
		marked := i%2 == 0
		marker := ""
		if marked {
			marker = []string{"X-Data-Residency: eu\r\n", "x-data-residency:  EU \r\n", "X-Data-Residency: eu, eu\r\n"}[i%3]
		}
		fmt.Fprintf(c, "GET /headers HTTP/1.1\r\nHost: profile\r\nX-Strait-Region: r1\r\nConnection: x-drop\r\nX-Drop: 1\r\n%s\r\n", marker)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the kept-alive connection: %v", i, err)
		}
		var r lab.Reply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s, %v", i, resp.Status, err)
		}
		if marked && r.Region != "r1" {
			t.Fatalf("marked request %d (%q) served in %s", i, marker, r.Region)
		}
		if got := resp.Header.Get("X-Strait-Cluster"); got != r.Cluster {
			t.Errorf("X-Strait-Cluster %q, served by %q", got, r.Cluster)
		}
		if len(r.Headers["X-Strait-Region"]) > 0 || len(r.Headers["X-Drop"]) > 0 {
			t.Errorf("service saw a client's X-Strait-* or hop-by-hop field: %v", r.Headers)
		}
		if !marked {
			served[r.Cluster]++
		}
	}
	if served["b"] == 0 || served["c"] == 0 {
		t.Errorf("unmarked requests served %v: want both clusters", served)
	}
	// Conflicting markers are refused with 400, and the connection closes.
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: profile\r\nX-Data-Residency: eu, us\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("ambiguous marker: %v, %v; want 400", resp, err)
	}
}

// TestImportPortRoutesEachHTTP2Stream: h2c with prior knowledge on an
// import port; concurrent streams on one connection are each routed on
// their own, and a gRPC call carries its marker as metadata.
func TestImportPortRoutesEachHTTP2Stream(t *testing.T) {
	l := httpLab(t, "grpc")
	addr := l.Gateway("a").ImportAddrs()["demo/profile:8080"]
	client := h2cClient()
	var mu sync.Mutex
	served := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			marked := i%2 == 0
			if marked {
				req.Header.Set("X-Data-Residency", "eu")
			}
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var r lab.Reply
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.ProtoMajor != 2 {
				errs <- fmt.Errorf("HTTP/%d %s: %v", resp.ProtoMajor, resp.Status, err)
				return
			}
			if marked && r.Region != "r1" {
				errs <- fmt.Errorf("marked stream served in %s", r.Region)
			}
			mu.Lock()
			served[r.Cluster]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if served["b"] == 0 {
		t.Errorf("served %v: unmarked streams never went to b", served)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var hdr metadata.MD
		resp, err := hc.Check(metadata.AppendToOutgoingContext(ctx, "x-data-residency", "eu"), &healthpb.HealthCheckRequest{Service: "demo/profile"}, grpc.Header(&hdr))
		cancel()
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("marked gRPC health check: %v, %v", resp, err)
		}
		if got := hdr.Get("x-strait-region"); len(got) != 1 || got[0] != "r1" {
			t.Fatalf("marked gRPC call served in %v", got)
		}
	}
	// A gRPC call the policy refuses ends with a gRPC status, not a
	// transport error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = hc.Check(metadata.AppendToOutgoingContext(ctx, "x-data-residency", "eu, us"), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(strings.ToLower(status.Convert(err).Message()), "x-data-residency") {
		t.Fatalf("ambiguous gRPC call: %v, want InvalidArgument naming the header", err)
	}
	if n := metricValue(t, l.Gateway("a"), "strait_gateway_grpc_requests_total", map[string]string{"service": "demo/profile:8080", "destination_cluster": "c", "grpc_status": "0"}); n < 10 {
		t.Errorf("gRPC calls counted with status 0 via c: %v, want >= 10", n)
	}
}

// TestConnectTunnelRoutesEachRequest: inside a CONNECT tunnel to a port
// that speaks HTTP, each request is routed on its own (what HTTPS_PROXY
// clients do for http:// URLs through `curl -p`).
func TestConnectTunnelRoutesEachRequest(t *testing.T) {
	l := httpLab(t, "http")
	c, err := net.DialTimeout("tcp", l.Gateway("a").ConnectAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	const authority = "profile.demo.svc.clusterset.local:8080"
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v, %v", resp, err)
	}
	served := map[string]int{}
	for i := range 30 {
		marked := i%3 == 0
		marker := ""
		if marked {
			marker = "X-Data-Residency: eu\r\n"
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n", authority, marker)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d in the tunnel: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		region := resp.Header.Get("X-Strait-Region")
		if marked && region != "r1" {
			t.Fatalf("marked request %d in the tunnel served in %q", i, region)
		}
		served[resp.Header.Get("X-Strait-Cluster")]++
	}
	if served["b"] == 0 || served["c"] == 0 {
		t.Errorf("requests in the tunnel served %v: want both clusters", served)
	}
}

// TestHTTPRequestsFailOverOneByOne: with keep-alive HTTP/1.1 and HTTP/2
// connections open to the import port, the gateway of the cluster that
// serves them is killed; every following request is served by the other
// cluster and none fails.
func TestHTTPRequestsFailOverOneByOne(t *testing.T) {
	l := httpLab(t, "http")
	addr := l.Gateway("a").ImportAddrs()["demo/profile:8080"]
	h1 := &http.Client{Timeout: 10 * time.Second}
	h2 := h2cClient()
	get := func(c *http.Client) (string, error) {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %s: %s", resp.Status, resp.Header.Get("X-Strait-Reason"))
		}
		return resp.Header.Get("X-Strait-Cluster"), nil
	}
	for _, c := range []*http.Client{h1, h2} {
		if _, err := get(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.KillGateway("c"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		for _, c := range []*http.Client{h1, h2} {
			got, err := get(c)
			if err != nil {
				t.Fatalf("request %d after c was killed: %v", i, err)
			}
			if got != "b" {
				t.Fatalf("request %d after c was killed served by %q", i, got)
			}
		}
	}
}

// TestKeptStreamsCarryRequestsAndSurviveServiceClose: requests with the
// same facts reuse the stream the first one opened; a kept stream whose
// service side closed while it waited is replaced without the client
// seeing an error, and without spending the retry budget.
func TestKeptStreamsCarryRequestsAndSurviveServiceClose(t *testing.T) {
	// The service closes keep-alive connections idle for 50 ms.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{IdleTimeout: 50 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	svc := serviceAt("demo/short", "http", 8080, ln.Addr().String(), nil)
	svc.Ports[0].Protocol = "http"
	l := startLab(t,
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: []gateway.Import{{Service: "demo/short", Port: 8080, Listen: "127.0.0.1:0"}}},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{svc}})
	addr := l.Gateway("a").ImportAddrs()["demo/short:8080"]
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() {
		t.Helper()
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("%s %q: %s", resp.Status, body, resp.Header.Get("X-Strait-Reason"))
		}
	}
	streams := func(kind string) float64 {
		return metricValue(t, l.Gateway("a"), "strait_gateway_http_upstream_streams_total", map[string]string{"service": "demo/short:8080", "destination_cluster": "b", "stream": kind})
	}
	for range 20 {
		get()
	}
	if kept, fresh := streams("kept"), streams("new"); kept < 15 || fresh > 5 {
		t.Errorf("20 requests in a row went on %v new and %v kept streams", fresh, kept)
	}
	for range 5 {
		time.Sleep(150 * time.Millisecond) // the service closes the kept stream's connection
		get()
	}
	if n := metricValue(t, l.Gateway("a"), "strait_gateway_http_retries_total", map[string]string{"service": "demo/short:8080"}); n != 0 {
		t.Errorf("retries counted %v for kept streams the service closed", n)
	}
}

// abortingGRPCService answers HTTP/2 with prior knowledge and resets every
// stream before a response starts: an upstream that breaks after the call
// reached it. It counts the calls it swallowed.
func abortingGRPCService(t *testing.T) (addr string, swallowed func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		n++
		mu.Unlock()
		panic(http.ErrAbortHandler)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestGRPCRetriesOnlyListedMethods: the nearer cluster takes gRPC calls
// and resets them before answering. A method listed in
// http.retryableGrpcMethods is sent once more, to the other cluster, and
// succeeds; any other method is not sent twice and ends UNAVAILABLE.
func TestGRPCRetriesOnlyListedMethods(t *testing.T) {
	addr, swallowed := abortingGRPCService(t)
	broken := serviceAt("demo/api", "grpc", 8080, addr, nil)
	broken.Ports[0].Protocol = "grpc"
	healthy := httpService(t, "demo/api", "c", "eu-west", "grpc")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-west", Zone: "z1", Imports: []gateway.Import{{Service: "demo/api", Port: 8080, Listen: "127.0.0.1:0"}}},
			{Name: "b", Region: "eu-west", Zone: "z1", Services: []discovery.Service{broken}},
			{Name: "c", Region: "eu-west", Zone: "z2", Services: []discovery.Service{healthy}},
		},
		HTTP:     gateway.HTTPConfig{RetryableGRPCMethods: []string{"/grpc.health.v1.Health/Check"}},
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Outlier:  route.OutlierConfig{ConsecutiveFailures: 100, BaseEjection: time.Second, MaxEjection: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	a := l.Gateway("a")
	conn, err := grpc.NewClient(a.ImportAddrs()["demo/api:8080"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	call := func(f func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return f(ctx)
	}
	// Watch is not listed: one attempt, reset by b, UNAVAILABLE.
	before := swallowed()
	err = call(func(ctx context.Context) error {
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Watch through a resetting cluster: %v, want Unavailable", err)
	}
	if swallowed() != before+1 {
		t.Errorf("Watch reached b %d times, want once", swallowed()-before)
	}
	// Check is listed: retried on c.
	for range 3 {
		before := swallowed()
		var hdr metadata.MD
		err := call(func(ctx context.Context) error {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
			if err == nil && resp.Status != healthpb.HealthCheckResponse_SERVING {
				err = fmt.Errorf("status %v", resp.Status)
			}
			return err
		})
		if err != nil || len(hdr.Get("x-strait-cluster")) != 1 || hdr.Get("x-strait-cluster")[0] != "c" {
			t.Fatalf("Check: %v, served by %v; want c after a retry", err, hdr.Get("x-strait-cluster"))
		}
		if swallowed() != before+1 {
			t.Errorf("Check reached b %d times, want once", swallowed()-before)
		}
	}
	if n := metricValue(t, a, "strait_gateway_http_retries_total", map[string]string{"service": "demo/api:8080", "destination_cluster": "b", "result": "retried"}); n != 3 {
		t.Errorf("retries counted %v, want 3", n)
	}
	if n := metricValue(t, a, "strait_gateway_grpc_requests_total", map[string]string{"service": "demo/api:8080", "destination_cluster": "c", "grpc_status": "0"}); n != 3 {
		t.Errorf("gRPC calls counted OK via c: %v, want 3", n)
	}
}

// TestImportPortRefusesSmuggling: the smuggling probes of the proxy port,
// in origin form on an import port that speaks HTTP.
func TestImportPortRefusesSmuggling(t *testing.T) {
	_, _, info := startDev(t, lab.Spec{})
	imp := info["eu-west-1"].Imports["demo/echo:8080"]
	hidden := "GET / HTTP/1.1\r\nHost: p\r\nX-Data-Residency: us\r\n\r\n"
	for _, tc := range []struct {
		name string
		raw  string
		want []answer // in order; the connection must close after the last
	}{
		{"Content-Length and Transfer-Encoding",
			"POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: p\r\n\r\n", []answer{{status: 400}}},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: e\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd", []answer{{status: 400}}},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: p\r\nX-Data-Residency: us\r\n eu\r\n\r\n", []answer{{status: 400}}},
		{"bare LF", "GET / HTTP/1.1\nHost: e\n\n", []answer{{status: 400}}},
		{"white space before a colon", "GET / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding : chunked\r\n\r\n", []answer{{status: 400}}},
		{"oversize chunk size", "POST / HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n", []answer{{status: 502}}},
		{"CONNECT is for the proxy port", "CONNECT profile.demo.svc.clusterset.local:8080 HTTP/1.1\r\nHost: x\r\n\r\n", []answer{{status: 405}}},
		{"a request hidden in a body is that body",
			"POST /first HTTP/1.1\r\nHost: e\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(hidden)) + hidden +
				"GET /second HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
			[]answer{{200, "demo/echo", "/first"}, {200, "demo/echo", "/second"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { sendProbe(t, imp, tc.raw, tc.want) })
	}
}
