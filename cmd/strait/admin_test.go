package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminTokenThroughCLI: a `strait gateway` process with
// admin.tokenFile and listen.probes; the CLI reaches its operator
// endpoints with the token from --admin-token-file, STRAIT_ADMIN_TOKEN_FILE
// or the gateway's own config file, and is refused without it, while the
// probes answer anyone.
func TestAdminTokenThroughCLI(t *testing.T) {
	dir := t.TempDir()
	_, tlsDir := caWithGateway(t, dir, "a", "eu-west")
	token := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	probes := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`cluster: a
region: eu-west
listen: {data: "127.0.0.1:%d", admin: %q, probes: %q, connect: "", passthrough: ""}
admin: {tokenFile: %q}
tls: {cert: %[5]s/cert.pem, key: %[5]s/key.pem, ca: %[5]s/ca.pem}
gossip: {bind: "127.0.0.1:%d", key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=, profile: local}
`, freePort(t), adminAddr, probes, token, tlsDir, freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := startGatewayProc(t, cfg)

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + probes + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("probes never ready: %v; gateway stderr:\n%s", err, gw.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	_, stderr, code := runStrait(t, nil, "status", "--admin", adminAddr)
	if code != 1 || !strings.Contains(stderr, "operator credentials required") {
		t.Fatalf("status without a token: exit %d %s", code, stderr)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"--admin", adminAddr, "--admin-token-file", token}},
		{"environment", []string{"STRAIT_ADMIN=" + adminAddr, "STRAIT_ADMIN_TOKEN_FILE=" + token}, nil},
		{"config file", nil, []string{"--config", cfg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runStrait(t, tc.env, append([]string{"status"}, tc.args...)...)
			if code != 0 || !strings.Contains(out, "Gateway a-") {
				t.Fatalf("status: exit %d\n%s%s", code, out, stderr)
			}
			out, stderr, code = runStrait(t, tc.env, append([]string{"keys", "list"}, tc.args...)...)
			if code != 0 || !strings.HasPrefix(out, "sha256:") || !strings.Contains(out, "(primary)") {
				t.Fatalf("keys list: exit %d\n%s%s", code, out, stderr)
			}
		})
	}
	_, stderr, code = runStrait(t, nil, "keys", "list", "--admin", adminAddr, "--admin-token-file", filepath.Join(dir, "missing"))
	if code != 2 || !strings.Contains(stderr, "admin token") {
		t.Fatalf("missing token file: exit %d %s", code, stderr)
	}
	out, stderr, code := runStrait(t, nil, "policy", "simulate", "--admin", adminAddr, "--admin-token-file", token,
		"--policy", "testdata/west-only.yaml", "--fail", "eu-west")
	if code != 0 || strings.Contains(stderr, "credentials") {
		t.Fatalf("policy simulate with the token: exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(gw.stderr.String(), "admin request refused") {
		t.Errorf("the refused request is not logged:\n%s", gw.stderr)
	}
}
