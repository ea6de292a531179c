package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
)

// TestGatewayProcessResidencyPolicy runs `strait gateway` with a policy
// file: --check validates it, an invalid one stops the start with exit 2
// and file:line problems, and SIGHUP reloads it, keeping the last good
// policy when the new one is invalid.
func TestGatewayProcessResidencyPolicy(t *testing.T) {
	dir := t.TempDir()
	_, tlsDir := caWithGateway(t, dir, "a", "eu-west")
	policy := filepath.Join(dir, "residency.yaml")
	example, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	writePolicy := func(body string) {
		if err := os.WriteFile(policy+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(policy+".tmp", policy); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(strings.Replace(string(example), "  classes:", "  clases:", 1))
	adminPort := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`cluster: a
region: eu-west
listen: {data: "127.0.0.1:%d", admin: "127.0.0.1:%d", connect: "127.0.0.1:%d", passthrough: ""}
tls: {cert: %[4]s/cert.pem, key: %[4]s/key.pem, ca: %[4]s/ca.pem}
gossip: {bind: "127.0.0.1:%d", profile: local, key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}
timeouts: {drain: 1s}
residency:
  policy: %s
  audit: {file: %s, maxSizeMB: 5}
`, freePort(t), adminPort, freePort(t), tlsDir, freePort(t), policy, filepath.Join(dir, "audit.jsonl")))

	_, stderr, code := runStrait(t, nil, "gateway", "--config", cfg, "--check")
	if code != 2 || !strings.Contains(stderr, policy+`:9:3: spec.clases: unknown key (did you mean "classes"?)`) {
		t.Fatalf("--check with an invalid policy: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runStrait(t, nil, "gateway", "--config", cfg)
	if code != 2 || !strings.Contains(stderr, policy+":9:3: spec.clases") {
		t.Fatalf("start with an invalid policy: exit %d\n%s", code, stderr)
	}

	writePolicy(string(example))
	out, stderr, code := runStrait(t, nil, "gateway", "--config", cfg, "--check")
	if code != 0 || !strings.Contains(out, policy+": valid policy default: 1 class") {
		t.Fatalf("--check: exit %d\n%s%s", code, out, stderr)
	}
	p := startGatewayProc(t, cfg)
	status := func() admin.ResidencyStatus {
		var st admin.ResidencyStatus
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/residency", adminPort))
		if err != nil {
			return st
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st
	}
	waitUntil := func(what string, cond func(admin.ResidencyStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(status()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %+v\n%s", what, status(), p.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("started on version 1", func(st admin.ResidencyStatus) bool { return st.InForce && st.Policy.Version == 1 })

	writePolicy(strings.Replace(string(example), "[eu]", "[eu-north]", 1))
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil("refused update reported", func(st admin.ResidencyStatus) bool {
		return st.Policy.Version == 1 && strings.Contains(st.Rejected, `unknown region or group "eu-north"`)
	})
	writePolicy(strings.Replace(string(example), "[eu]", "[eu-west]", 1))
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil("good update in force", func(st admin.ResidencyStatus) bool {
		return st.Policy.Version == 2 && len(st.Classes) == 1 && strings.Join(st.Classes[0].Allowed, ",") == "eu-west"
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(15 * time.Second):
		t.Fatal("gateway still running 15s after SIGTERM")
	}
	// The file watcher may have taken the same updates; the SIGHUP handler
	// logs its own outcome either way.
	for _, want := range []string{"SIGHUP: residency policy not reloaded", "SIGHUP: residency policy reloaded",
		`passthrough=""`} { // listen.passthrough: "" binds nothing

		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("gateway log lacks %q:\n%s", want, p.stderr)
		}
	}
	audit, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"decision":"applied"`, `"decision":"rejected"`, `"version":2`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit trail lacks %s:\n%s", want, audit)
		}
	}
}
