package lab_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/metricstest"
	"github.com/straitmesh/strait/lab"
)

// startDemo runs a demo service for the test and returns its discovery entry.
func startDemo(t *testing.T, key, cluster, region string, labels map[string]string) discovery.Service {
	s, _ := startDemoService(t, key, cluster, region, labels)
	return s
}

func startDemoService(t *testing.T, key, cluster, region string, labels map[string]string) (discovery.Service, *lab.DemoService) {
	t.Helper()
	d, err := lab.StartDemo("127.0.0.1:0", key, cluster, region)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return serviceAt(key, "http", 8080, d.Addr(), labels), d
}

func startLab(t *testing.T, clusters ...lab.ClusterSpec) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: clusters,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Health:   gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// viaConnect sends one HTTP GET to authority through the CONNECT port at proxy.
func viaConnect(t *testing.T, proxy, authority string) (*http.Response, lab.Reply) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		return resp, lab.Reply{}
	}
	fmt.Fprintf(c, "GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", authority)
	inner, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET through tunnel: %v", err)
	}
	defer inner.Body.Close()
	var r lab.Reply
	if err := json.NewDecoder(inner.Body).Decode(&r); err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	return resp, r
}

func getJSON(t *testing.T, client *http.Client, u string) lab.Reply {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	var r lab.Reply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	return r
}

func twoClusters(t *testing.T) *lab.Lab {
	ledger := startDemo(t, "demo/ledger", "b", "eu-west", map[string]string{"data-class": "pii-eu"})
	return startLab(t,
		lab.ClusterSpec{Name: "a", Region: "eu-central", Imports: []gateway.Import{{Service: "demo/ledger", Port: 8080, Listen: "127.0.0.1:0"}}},
		lab.ClusterSpec{Name: "b", Region: "eu-west", Services: []discovery.Service{ledger}},
	)
}

func inboundFrom(t *testing.T, g *gateway.Gateway, svc, peer string) float64 {
	t.Helper()
	return metricValue(t, g, "strait_gateway_connections_total", map[string]string{"direction": "inbound", "service": svc, "source_cluster": peer, "destination_cluster": g.Config().Cluster, "result": "ok"})
}

func TestCrossClusterThroughBothGateways(t *testing.T) {
	l := twoClusters(t)
	a, b := l.Gateway("a"), l.Gateway("b")

	t.Run("connect port", func(t *testing.T) {
		before := inboundFrom(t, b, "demo/ledger:8080", "a")
		resp, r := viaConnect(t, a.ConnectAddr(), "ledger.demo.svc.clusterset.local:8080")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT status %s", resp.Status)
		}
		if r.Cluster != "b" || r.Region != "eu-west" || r.Service != "demo/ledger" || r.Path != "/hello" {
			t.Fatalf("reply %+v, want demo/ledger from b in eu-west", r)
		}
		if got := resp.Header.Get("X-Strait-Cluster"); got != "b" {
			t.Errorf("X-Strait-Cluster %q, want b", got)
		}
		// B's gateway accepted it over mTLS from a peer whose certificate says cluster a.
		if got := inboundFrom(t, b, "demo/ledger:8080", "a"); got != before+1 {
			t.Errorf("b inbound from a = %v, want %v", got, before+1)
		}
	})

	t.Run("absolute-form http proxy", func(t *testing.T) {
		proxy, _ := url.Parse("http://" + a.ConnectAddr())
		client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}, Timeout: 10 * time.Second}
		r := getJSON(t, client, "http://ledger.demo.svc.clusterset.local:8080/x")
		if r.Cluster != "b" || r.Path != "/x" {
			t.Fatalf("reply %+v, want b /x", r)
		}
	})

	t.Run("per-import port", func(t *testing.T) {
		before := inboundFrom(t, b, "demo/ledger:8080", "a")
		addr := a.ImportAddrs()["demo/ledger:8080"]
		client := &http.Client{Timeout: 10 * time.Second}
		r := getJSON(t, client, "http://"+addr+"/imp")
		if r.Cluster != "b" || r.Service != "demo/ledger" || r.Path != "/imp" {
			t.Fatalf("reply %+v, want demo/ledger from b", r)
		}
		if got := inboundFrom(t, b, "demo/ledger:8080", "a"); got != before+1 {
			t.Errorf("b inbound from a = %v, want %v", got, before+1)
		}
	})

	t.Run("unknown service is 404", func(t *testing.T) {
		resp, _ := viaConnect(t, a.ConnectAddr(), "nope.demo.svc.clusterset.local:8080")
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %s, want 404", resp.Status)
		}
		if !strings.Contains(resp.Header.Get("X-Strait-Reason"), "no cluster exports demo/nope:8080") {
			t.Errorf("reason %q", resp.Header.Get("X-Strait-Reason"))
		}
	})

	t.Run("bad name is 400", func(t *testing.T) {
		resp, _ := viaConnect(t, a.ConnectAddr(), "example.com:443")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %s, want 400", resp.Status)
		}
	})
}

func TestInboundRefusesClientWithoutFederationCertificate(t *testing.T) {
	l := twoClusters(t)
	b := l.Gateway("b")
	sni := wire.Target{Namespace: "demo", Name: "ledger", Port: 8080}.SNI()
	foreign, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, err := foreign.Issue("eu-central", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no client certificate", nil},
		{"certificate from another CA", []tls.Certificate{foreignCert}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, b, "strait_gateway_inbound_handshake_failures_total", nil)
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", b.DataAddr(), &tls.Config{
				RootCAs: l.CA.Pool(), ServerName: sni, InsecureSkipVerify: true, Certificates: tc.certs,
			})
			if err == nil {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				// TLS 1.3: the server checks the client certificate after the
				// client's handshake returns; the refusal arrives on read.
				_, err = conn.Read(make([]byte, 16))
			}
			if err == nil {
				t.Fatal("inbound listener answered a client without a federation certificate")
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %q does not mention the certificate", err)
			}
			waitFor(t, func() bool {
				return metricValue(t, b, "strait_gateway_inbound_handshake_failures_total", nil) == before+1
			})
		})
	}
}

func TestStoppedGatewayFailsFast(t *testing.T) {
	l := twoClusters(t)
	a := l.Gateway("a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.StopGateway(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, _ := viaConnect(t, a.ConnectAddr(), "ledger.demo.svc.clusterset.local:8080")
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %s, want 503", resp.Status)
	}
	reason := resp.Header.Get("X-Strait-Reason")
	if !strings.Contains(reason, "demo/ledger:8080") || !strings.Contains(reason, "b") {
		t.Errorf("reason %q does not name the service and cluster", reason)
	}
	if took > 2*time.Second {
		t.Errorf("503 took %s, want fail-fast", took)
	}
	// The per-import port closes the connection at once instead of hanging.
	c, err := net.Dial("tcp", a.ImportAddrs()["demo/ledger:8080"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("import port read = %d, %v; want EOF", n, err)
	}
}

// strait_peer_up follows gossip: 1 for a peer cluster while its gateway is
// alive, 0 once it has gone; strait_gateway_tunnel_rtt_seconds appears for
// a peer once a tunnel to it is open; strait_build_info is 1.
func TestPeerUpAndTunnelRoundTrip(t *testing.T) {
	l := twoClusters(t)
	a := l.Gateway("a")
	peerB := map[string]string{"destination_cluster": "b", "region": "eu-west"}
	waitFor(t, func() bool { return metricValue(t, a, "strait_peer_up", peerB) == 1 })
	if n := metricValue(t, a, "strait_peer_up", map[string]string{"destination_cluster": "a"}); n != 0 {
		t.Errorf("a lists itself as a peer: %v", n)
	}
	if n := metricValue(t, a, "strait_build_info", map[string]string{"goversion": runtime.Version()}); n != 1 {
		t.Errorf("strait_build_info = %v, want 1", n)
	}
	if resp, _ := viaConnect(t, a.ConnectAddr(), "ledger.demo.svc.clusterset.local:8080"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	waitFor(t, func() bool {
		return metricValue(t, a, "strait_gateway_tunnel_rtt_seconds", map[string]string{"destination_cluster": "b"}) > 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.StopGateway(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return metricValue(t, a, "strait_peer_up", peerB) == 0 })
}

func TestPartitionedLinkFailsWithinConnectTimeout(t *testing.T) {
	l := twoClusters(t)
	if err := l.Link("a", "b").Partition(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, _ := viaConnect(t, l.Gateway("a").ConnectAddr(), "ledger.demo.svc.clusterset.local:8080")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %s, want 503", resp.Status)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s with a 1s connect timeout", took)
	}
	if err := l.Link("a", "b").Heal(); err != nil {
		t.Fatal(err)
	}
	resp, r := viaConnect(t, l.Gateway("a").ConnectAddr(), "ledger.demo.svc.clusterset.local:8080")
	if resp.StatusCode != http.StatusOK || r.Cluster != "b" {
		t.Fatalf("after heal: %s %+v", resp.Status, r)
	}
}

func TestFailoverToNextClusterOnDeadLink(t *testing.T) {
	pb := startDemo(t, "demo/profile", "b", "eu-west", nil)
	pc := startDemo(t, "demo/profile", "c", "us-east", nil)
	l := startLab(t,
		lab.ClusterSpec{Name: "a", Region: "eu-central"},
		lab.ClusterSpec{Name: "b", Region: "eu-central", Services: []discovery.Service{pb}}, // same region: preferred
		lab.ClusterSpec{Name: "c", Region: "us-east", Services: []discovery.Service{pc}},
	)
	_, r := viaConnect(t, l.Gateway("a").ConnectAddr(), "profile.demo.svc.clusterset.local:8080")
	if r.Cluster != "b" {
		t.Fatalf("served by %q, want b (same region)", r.Cluster)
	}
	if err := l.Link("a", "b").Partition(); err != nil {
		t.Fatal(err)
	}
	resp, r := viaConnect(t, l.Gateway("a").ConnectAddr(), "profile.demo.svc.clusterset.local:8080")
	if resp.StatusCode != http.StatusOK || r.Cluster != "c" {
		t.Fatalf("with a->b cut: %s served by %q, want c", resp.Status, r.Cluster)
	}
}

func TestUnhealthyEndpointsMoveTrafficToNextCluster(t *testing.T) {
	pb, demoB := startDemoService(t, "demo/profile", "b", "eu-central", nil)
	pc := startDemo(t, "demo/profile", "c", "us-east", nil)
	l := startLab(t,
		lab.ClusterSpec{Name: "a", Region: "eu-central"},
		lab.ClusterSpec{Name: "b", Region: "eu-central", Services: []discovery.Service{pb}},
		lab.ClusterSpec{Name: "c", Region: "us-east", Services: []discovery.Service{pc}},
	)
	a := l.Gateway("a")
	demoB.Close()
	// b's health check notices, b tells the federation, a stops choosing b.
	waitFor(t, func() bool {
		for _, c := range a.Catalog().Snapshot().Clusters {
			if c.Cluster == "b" {
				return len(c.Services) == 1 && c.Services[0].Healthy == 0 && c.Services[0].Total == 1
			}
		}
		return false
	})
	// The endpoint had passed its checks: b marked it down only after
	// health.unhealthyThreshold (2) failures in a row.
	if n := metricValue(t, l.Gateway("b"), "strait_gateway_health_check_failures_total", nil); n < 2 {
		t.Errorf("b marked its endpoint down after %v failed checks, want at least 2", n)
	}
	before := metricValue(t, a, "strait_gateway_dial_failures_total", nil)
	resp, r := viaConnect(t, a.ConnectAddr(), "profile.demo.svc.clusterset.local:8080")
	if resp.StatusCode != http.StatusOK || r.Cluster != "c" {
		t.Fatalf("%s served by %q, want c", resp.Status, r.Cluster)
	}
	if got := metricValue(t, a, "strait_gateway_dial_failures_total", nil); got != before {
		t.Errorf("a still tried b: dial failures %v -> %v", before, got)
	}
	st := a.Status()
	for _, c := range st.Clusters {
		if c.Cluster == "b" && (len(c.Services) != 1 || c.Services[0].Healthy != 0) {
			t.Errorf("status shows b as %+v", c)
		}
	}
}

func TestLinkLatencyApplies(t *testing.T) {
	l := twoClusters(t)
	const oneWay = 40 * time.Millisecond
	if err := l.Link("a", "b").SetLatency(oneWay, 0); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	getJSON(t, client, "http://"+l.Gateway("a").ImportAddrs()["demo/ledger:8080"]+"/")
	// At least the TLS handshake and the request each cross the link both ways.
	if took := time.Since(start); took < 4*oneWay {
		t.Fatalf("request took %s through a link with %s one-way latency", took, oneWay)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue sums the samples of metric name whose labels include want.
func metricValue(t *testing.T, g *gateway.Gateway, name string, want map[string]string) float64 {
	t.Helper()
	return metricstest.Sum(t, g.Registry(), name, want)
}
