package gateway_test

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/fault"
)

// TestFaultAdminAPIOff: with faults.enabled false (the default), a real
// gateway answers every fault route with 403 and says how to turn it on.
func TestFaultAdminAPIOff(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	code, body := adminRequest{method: "POST", path: "/v1/faults", contentType: "application/json",
		body: `{"id":"x","kind":"kill","lease":"15s"}`}.do(t, g.AdminAddr())
	if code != 403 || strings.TrimSpace(body) != "fault injection is off: set faults.enabled: true in this gateway's config" {
		t.Fatalf("inject with fault mode off: %d %q", code, body)
	}
	if code, body := (adminRequest{method: "DELETE", path: "/v1/faults/x"}).do(t, g.AdminAddr()); code != 403 {
		t.Fatalf("undo with fault mode off: %d %q", code, body)
	}
	if code, body := (adminRequest{path: "/v1/faults"}).do(t, g.AdminAddr()); code != 403 || !strings.Contains(body, "faults.enabled") {
		t.Fatalf("list with fault mode off: %d %q", code, body)
	}
}

// TestFaultAdminAPI: the fault routes of a real gateway with fault mode
// on: the operator token, 400 naming the field, renewal, 409, the list,
// undo and 404, and /readyz naming a kill in force.
func TestFaultAdminAPI(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	write(t, tokenFile, adminToken+"\n")
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	cfg.Admin.TokenFile = tokenFile
	cfg.Faults = fault.Config{Enabled: true, MaxLease: time.Minute}
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := g.AdminAddr()
	post := func(body string) adminRequest {
		return adminRequest{method: "POST", path: "/v1/faults", contentType: "application/json", token: adminToken, body: body}
	}
	for _, tc := range []struct {
		name string
		req  adminRequest
		code int
		msg  string
	}{
		{"no token", adminRequest{method: "POST", path: "/v1/faults", contentType: "application/json", body: `{"id":"x","kind":"kill","lease":"15s"}`}, 401, ""},
		{"not json", adminRequest{method: "POST", path: "/v1/faults", contentType: "text/plain", token: adminToken, body: `{}`}, 415, ""},
		{"unknown field", post(`{"id":"x","kind":"kill","lease":"15s","force":true}`), 400, "force"},
		{"unknown kind", post(`{"id":"x","kind":"meteor","lease":"15s"}`), 400, "kind"},
		{"missing id", post(`{"kind":"kill","lease":"15s"}`), 400, "id"},
		{"bad duration", post(`{"id":"x","kind":"latency","peers":["b"],"delay":"soon","lease":"15s"}`), 400, "soon"},
		{"partition without peers", post(`{"id":"x","kind":"partition","lease":"15s"}`), 400, "peers"},
		{"zero lease", post(`{"id":"x","kind":"kill","lease":"0s"}`), 400, "lease"},
		{"lease above maxLease", post(`{"id":"x","kind":"kill","lease":"2m"}`), 400, "faults.maxLease"},
		{"unknown id", adminRequest{method: "DELETE", path: "/v1/faults/nothing", token: adminToken}, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := tc.req.do(t, addr)
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Fatalf("%d %q, want %d naming %q", code, body, tc.code, tc.msg)
			}
		})
	}

	before := time.Now()
	// The contract's example: every field, those a kill does not take
	// ignored.
	code, body := post(`{"id":"lose-a-cluster/kill-eu-west","kind":"kill","peers":["aws-us-east-1"],"delay":"50ms","jitter":"5ms","percent":1.5,"lease":"15s"}`).do(t, addr)
	if code != 200 {
		t.Fatalf("inject: %d %q", code, body)
	}
	var f struct {
		ID      string    `json:"id"`
		Kind    string    `json:"kind"`
		Lease   string    `json:"lease"`
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal([]byte(body), &f); err != nil {
		t.Fatal(err)
	}
	if f.ID != "lose-a-cluster/kill-eu-west" || f.Kind != "kill" || f.Lease != "15s" || f.Expires.Before(before.Add(14*time.Second)) {
		t.Fatalf("answer %s", body)
	}
	if code, body := (adminRequest{path: "/readyz"}).do(t, addr); code != 503 || !strings.Contains(body, "lose-a-cluster/kill-eu-west") {
		t.Fatalf("readyz under kill: %d %q", code, body)
	}
	// Under kill the other listeners close what they accept.
	if c, err := net.DialTimeout("tcp", g.ConnectAddr(), time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("connect port answered %d bytes under kill", n)
		}
		c.Close()
	}
	if code, body := post(`{"id":"lose-a-cluster/kill-eu-west","kind":"kill","lease":"20s"}`).do(t, addr); code != 200 || !strings.Contains(body, `"20s"`) {
		t.Fatalf("renew: %d %q", code, body)
	}
	if code, body := post(`{"id":"lose-a-cluster/kill-eu-west","kind":"freeze","lease":"20s"}`).do(t, addr); code != 409 {
		t.Fatalf("conflicting renewal: %d %q", code, body)
	}
	code, body = adminRequest{path: "/v1/faults", token: adminToken}.do(t, addr)
	var list []map[string]any
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list) != 1 || list[0]["id"] != "lose-a-cluster/kill-eu-west" {
		t.Fatalf("list: %d %q", code, body)
	}
	if code, body := (adminRequest{method: "DELETE", path: "/v1/faults/" + url.PathEscape("lose-a-cluster/kill-eu-west"), token: adminToken}).do(t, addr); code != 200 {
		t.Fatalf("undo: %d %q", code, body)
	}
	if code, body := (adminRequest{path: "/readyz"}).do(t, addr); code != 200 {
		t.Fatalf("readyz after undo: %d %q", code, body)
	}
	if code, _ := (adminRequest{method: "DELETE", path: "/v1/faults/lose-a-cluster/kill-eu-west", token: adminToken}).do(t, addr); code != 404 {
		t.Fatalf("second undo: %d", code)
	}
}

// TestFaultAdminClient: the typed client injects, lists and undoes.
func TestFaultAdminClient(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.Listen = loopbackListen()
	cfg.Faults = fault.Config{Enabled: true, MaxLease: time.Minute}
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := admin.Client{Addr: g.AdminAddr()}
	ctx := context.Background()
	f, err := c.InjectFault(ctx, fault.Spec{ID: "drill/slow", Kind: fault.Latency, Peers: []string{"b"},
		Delay: fault.Duration(50 * time.Millisecond), Jitter: fault.Duration(5 * time.Millisecond), Lease: fault.Duration(15 * time.Second)})
	if err != nil || f.ID != "drill/slow" || f.Expires.IsZero() {
		t.Fatalf("inject: %+v, %v", f, err)
	}
	if fs, err := c.Faults(ctx); err != nil || len(fs) != 1 || time.Duration(fs[0].Delay) != 50*time.Millisecond {
		t.Fatalf("list: %+v, %v", fs, err)
	}
	if _, err := c.UndoFault(ctx, "drill/slow"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UndoFault(ctx, "drill/slow"); err == nil || !strings.Contains(err.Error(), "no such fault") {
		t.Fatalf("second undo: %v", err)
	}
}
