package gateway_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/internal/metricstest"
)

// gossipKey is the key startGatewayWith gives every test gateway.
const gossipKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

const adminToken = "s3cret-operator-token-0123456789"

// loopbackListen binds every listener of a test gateway on 127.0.0.1.
func loopbackListen() gateway.ListenConfig {
	return gateway.ListenConfig{Data: "127.0.0.1:0", Admin: "127.0.0.1:0", Connect: "127.0.0.1:0"}
}

// adminRequest is one request to a gateway's admin port; host overrides
// the Host header.
type adminRequest struct {
	method, path, host, token, contentType, body string
	header                                       map[string]string
}

func (ar adminRequest) do(t *testing.T, addr string) (int, string) {
	t.Helper()
	var body io.Reader
	if ar.body != "" {
		body = strings.NewReader(ar.body)
	}
	method := ar.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, "http://"+addr+ar.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ar.host != "" {
		req.Host = ar.host
	}
	if ar.token != "" {
		req.Header.Set("Authorization", "Bearer "+ar.token)
	}
	if ar.contentType != "" {
		req.Header.Set("Content-Type", ar.contentType)
	}
	for k, v := range ar.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminOperatorEndpointsNeedTheToken: with admin.tokenFile, a real
// gateway's operator endpoints refuse requests without the token, with a
// wrong one, for a foreign Host (DNS rebinding) or cross-origin, and POSTs
// that are not JSON (a browser form's CSRF), while the probes answer
// anyone; GET /v1/keys shows fingerprints, never key bytes, and a key
// operation with the token works without echoing the key.
func TestAdminOperatorEndpointsNeedTheToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	write(t, tokenFile, adminToken+"\n")
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	cfg.Admin.TokenFile = tokenFile
	cfg.Admin.AllowedHosts = []string{"gw.example.internal"}
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := g.AdminAddr()
	newKey, err := catalog.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	installBody := `{"key": "` + newKey + `"}`
	const jsonType = "application/json"

	for _, tc := range []struct {
		name   string
		req    adminRequest
		code   int
		reason string // counted in strait_gateway_admin_refused_total
	}{
		{"healthz needs nothing", adminRequest{path: "/healthz", host: "evil.example"}, 200, ""},
		{"readyz needs nothing", adminRequest{path: "/readyz", host: "10.1.2.3:15000"}, 200, ""},
		{"metrics need nothing", adminRequest{path: "/metrics", host: "prometheus.scrape.target"}, 200, ""},
		{"keys without a token", adminRequest{path: "/v1/keys"}, 401, admin.RefusedNoCredentials},
		{"keys with a wrong token", adminRequest{path: "/v1/keys", token: adminToken + "x"}, 401, admin.RefusedBadCredentials},
		{"keys with basic auth", adminRequest{path: "/v1/keys", header: map[string]string{"Authorization": "Basic b3A6cHc="}}, 401, admin.RefusedNoCredentials},
		{"status without a token", adminRequest{path: "/v1/status"}, 401, admin.RefusedNoCredentials},
		{"policy without a token", adminRequest{path: "/v1/residency/policy"}, 401, admin.RefusedNoCredentials},
		{"topology page without a token", adminRequest{path: "/ui/"}, 401, admin.RefusedNoCredentials},
		{"topology events without a token", adminRequest{path: "/ui/events"}, 401, admin.RefusedNoCredentials},
		{"topology page with the token", adminRequest{path: "/ui/", token: adminToken}, 200, ""},
		{"dns rebinding to the topology events", adminRequest{path: "/ui/events", token: adminToken, host: "evil.example"}, 403, admin.RefusedHost},
		{"keys with the token", adminRequest{path: "/v1/keys", token: adminToken}, 200, ""},
		{"keys by localhost", adminRequest{path: "/v1/keys", token: adminToken, host: "localhost:15000"}, 200, ""},
		{"keys by an allowed host", adminRequest{path: "/v1/keys", token: adminToken, host: "GW.example.internal:15000"}, 200, ""},
		{"dns rebinding with the token", adminRequest{path: "/v1/keys", token: adminToken, host: "evil.example:" + port(addr)}, 403, admin.RefusedHost},
		{"dns rebinding to status", adminRequest{path: "/v1/status", host: "evil.example"}, 403, admin.RefusedHost},
		{"a name that only looks loopback", adminRequest{path: "/v1/status", token: adminToken, host: "127.0.0.1.nip.io"}, 403, admin.RefusedHost},
		{"csrf form post", adminRequest{method: "POST", path: "/v1/keys/install", token: adminToken, contentType: "text/plain", body: installBody}, 415, admin.RefusedContentType},
		{"post without content type", adminRequest{method: "POST", path: "/v1/keys/install", token: adminToken, body: installBody}, 415, admin.RefusedContentType},
		{"url-encoded form post", adminRequest{method: "POST", path: "/v1/keys/install", token: adminToken, contentType: "application/x-www-form-urlencoded", body: "key=" + newKey}, 415, admin.RefusedContentType},
		{"cross-site post", adminRequest{method: "POST", path: "/v1/keys/install", token: adminToken, contentType: jsonType, body: installBody,
			header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}}, 403, admin.RefusedCrossOrigin},
		{"json post without a token", adminRequest{method: "POST", path: "/v1/keys/install", contentType: jsonType, body: installBody}, 401, admin.RefusedNoCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before float64
			if tc.reason != "" {
				before = metricstest.Sum(t, g.Registry(), "strait_gateway_admin_refused_total", map[string]string{"reason": tc.reason})
			}
			code, body := tc.req.do(t, addr)
			if code != tc.code {
				t.Fatalf("%s %s (Host %q): %d %q, want %d", tc.req.method, tc.req.path, tc.req.host, code, body, tc.code)
			}
			if strings.Contains(body, gossipKey) || strings.Contains(body, newKey) {
				t.Fatalf("answer shows a key: %s", body)
			}
			if tc.reason != "" {
				if n := metricstest.Sum(t, g.Registry(), "strait_gateway_admin_refused_total", map[string]string{"reason": tc.reason}); n != before+1 {
					t.Errorf("refused{reason=%s} went from %v to %v", tc.reason, before, n)
				}
			}
		})
	}
	if ks, _ := g.Catalog().Keys(); len(ks.Keys) != 1 {
		t.Fatalf("a refused POST installed a key: %d keys", len(ks.Keys))
	}

	c := admin.Client{Addr: addr, Token: adminToken}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.KeyOp(ctx, "install", newKey)
	if err != nil || !res.Complete || res.Fingerprint != catalog.KeyFingerprint(newKey) {
		t.Fatalf("install with the token: %+v %v", res, err)
	}
	kl, err := c.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kl.Primary != catalog.KeyFingerprint(gossipKey) || len(kl.Keys) != 2 || !strings.HasPrefix(kl.Keys[0], "sha256:") {
		t.Fatalf("keys %+v, want two fingerprints, primary %s", kl, catalog.KeyFingerprint(gossipKey))
	}
	code, body := adminRequest{path: "/v1/keys", token: adminToken}.do(t, addr)
	if code != 200 || strings.Contains(body, gossipKey) || strings.Contains(body, newKey) {
		t.Fatalf("GET /v1/keys: %d, shows a key: %s", code, body)
	}
	if _, err := (admin.Client{Addr: addr}).Status(ctx); err == nil || !strings.Contains(err.Error(), "credentials required") {
		t.Fatalf("status without the token: %v", err)
	}
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("status with the token: %v", err)
	}
}

// TestShutdownEndsTopologyPages: an open /ui/events stream does not
// hold a shutdown for its drain timeout.
func TestShutdownEndsTopologyPages(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	cfg.Timeouts.Drain = 20 * time.Second
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + g.AdminAddr() + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui/events: %s", resp.Status)
	}
	if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown with a topology page open took %s", took)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Logf("stream ended: %v", err)
	}
}

// TestAdminOnLoopbackWithoutToken: without admin.tokenFile (loopback
// only), operator requests need no credentials, but the Host and
// Content-Type checks still stop DNS rebinding and CSRF.
func TestAdminOnLoopbackWithoutToken(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := catalog.GenerateKey()
	for _, tc := range []struct {
		name string
		req  adminRequest
		code int
	}{
		{"status on loopback", adminRequest{path: "/v1/status"}, 200},
		{"keys on loopback", adminRequest{path: "/v1/keys"}, 200},
		{"dns rebinding", adminRequest{path: "/v1/keys", host: "evil.example:" + port(g.AdminAddr())}, 403},
		{"csrf form post", adminRequest{method: "POST", path: "/v1/keys/use", contentType: "text/plain", body: `{"key": "` + newKey + `"}`}, 415},
		{"rebinding json post", adminRequest{method: "POST", path: "/v1/keys/install", host: "evil.example", contentType: "application/json", body: `{"key": "` + newKey + `"}`}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := tc.req.do(t, g.AdminAddr()); code != tc.code || strings.Contains(body, gossipKey) {
				t.Fatalf("%d %q, want %d and no key", code, body, tc.code)
			}
		})
	}
	if ks, _ := g.Catalog().Keys(); len(ks.Keys) != 1 {
		t.Fatalf("a refused POST installed a key: %d keys", len(ks.Keys))
	}
}

// TestGatewayRefusesAnOpenAdminPort: operator endpoints on every
// interface without admin.tokenFile stop the gateway at start, naming the
// key; so does a token file too short to be a secret.
func TestGatewayRefusesAnOpenAdminPort(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	cfg.Listen.Admin = "0.0.0.0:0"
	_, err := startGateway(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "listen.admin: 0.0.0.0:0 is not a loopback address and admin.tokenFile is not set") {
		t.Fatalf("Start: %v", err)
	}

	short := filepath.Join(t.TempDir(), "token")
	write(t, short, "short\n")
	cfg.Listen = loopbackListen()
	cfg.Admin.TokenFile = short
	if _, err = startGateway(t, cfg); err == nil || !strings.Contains(err.Error(), "admin.tokenFile") || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("Start with a short token: %v", err)
	}
}

// TestProbesListener: listen.probes answers /healthz, /readyz and
// /metrics with no credentials or Host check, and nothing else.
func TestProbesListener(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	write(t, tokenFile, adminToken)
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	cfg.Listen.Probes = "127.0.0.1:0"
	cfg.Admin.TokenFile = tokenFile
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	probes := g.ProbesAddr()
	if probes == "" || probes == g.AdminAddr() {
		t.Fatalf("probes address %q", probes)
	}
	for _, tc := range []struct {
		path string
		code int
	}{{"/healthz", 200}, {"/readyz", 200}, {"/metrics", 200}, {"/v1/keys", 404}, {"/v1/status", 404}, {"/v1/residency", 404}} {
		if code, body := (adminRequest{path: tc.path, host: "10.0.0.7:15020", token: adminToken}).do(t, probes); code != tc.code {
			t.Errorf("probes %s: %d %q, want %d", tc.path, code, body, tc.code)
		}
	}
	if code, _ := (adminRequest{method: "POST", path: "/v1/keys/install", token: adminToken, contentType: "application/json", body: `{"key": "` + gossipKey + `"}`}).do(t, probes); code != 404 {
		t.Errorf("key operation on the probes port: %d, want 404", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := admin.Client{Addr: g.AdminAddr(), Token: adminToken}.Status(ctx)
	if err != nil || st.Addresses.Probes != probes {
		t.Fatalf("status: probes %q, %v", st.Addresses.Probes, err)
	}
}

func port(addr string) string {
	return addr[strings.LastIndex(addr, ":")+1:]
}
