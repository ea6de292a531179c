package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/lab"
)

// TestDevTourRoutingState runs the routing-state commands that the tour
// of `strait dev` prints, exactly as printed, against a dev federation:
// a policy applied through one gateway is listed by another at the index
// the apply printed, on every gateway.
func TestDevTourRoutingState(t *testing.T) {
	ctx, d := startDev(t)
	var tour strings.Builder
	lab.PrintTour(&tour, d.Info(), "strait")
	var cmds [][]string
	for _, line := range strings.Split(tour.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "strait policy apply ") || strings.HasPrefix(line, "strait state ") {
			cmds = append(cmds, strings.Fields(line)[1:])
		}
	}
	if len(cmds) != 4 {
		t.Fatalf("tour shows %d routing-state commands, want 4:\n%s", len(cmds), tour.String())
	}
	out, stderr, code := runStrait(t, nil, cmds[0]...)
	m := regexp.MustCompile(`^policy default applied at index (\d+)\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("%v: exit %d, out %q, err %q", cmds[0], code, out, stderr)
	}
	out, stderr, code = runStrait(t, nil, cmds[1]...)
	if code != 0 || !regexp.MustCompile(`(?m)^policy\s+default\s+`+m[1]+`\s`).MatchString(out) {
		t.Fatalf("%v: exit %d, out %q, err %q; want default at index %s", cmds[1], code, out, stderr, m[1])
	}
	out, _, code = runStrait(t, nil, cmds[2]...)
	if code != 0 || strings.Count(out, " true ") < 3 || !strings.Contains(out, "eu-west-2") {
		t.Fatalf("peers: exit %d\n%s", code, out)
	}
	if err := d.WaitState(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range d.Clusters() {
		r, ok := d.Gateway(name).RoutingState().Get(state.KindPolicy, "default")
		if !ok || r.Value != lab.SamplePolicy {
			t.Errorf("%s does not route on the applied policy: %+v", name, r)
		}
	}

	// The failover priority the tour writes sends demo/profile from
	// eu-west-1 to us-east-1, within moments, as the tour says.
	out, stderr, code = runStrait(t, nil, cmds[3]...)
	if code != 0 || !strings.Contains(out, "failover demo/profile written at index") {
		t.Fatalf("%v: exit %d, out %q, err %q", cmds[3], code, out, stderr)
	}
	proxy, _ := url.Parse("http://" + d.Gateway("eu-west-1").ConnectAddr())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true}}
	served := func() string {
		resp, err := client.Get("http://profile.demo.svc.clusterset.local:8080/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r lab.Reply
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatalf("%s: %v", resp.Status, err)
		}
		return r.Cluster
	}
	start := time.Now()
	for n := 0; n < 20; {
		if served() == "us-east-1" {
			n++
			continue
		}
		if n = 0; time.Since(start) > 5*time.Second {
			t.Fatal("5s after the failover record was written, eu-west-1 still sends demo/profile elsewhere than us-east-1")
		}
	}
}

// TestStateCommands covers the rest of the CLI against a dev federation:
// validation before anything is sent, get/history, snapshot save and
// restore, and refusing a corrupted snapshot.
func TestStateCommands(t *testing.T) {
	_, d := startDev(t)
	info := d.Info()
	cfg := info.Clusters[1].CLIConfig // the non-voter
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// An invalid policy is refused before it is sent: exit code 2.
	bad := write("bad.yaml", "kind: ResidencyPolicy\nmetadata: {name: x}\n")
	if _, stderr, code := runStrait(t, nil, "policy", "apply", "--config", cfg, bad); code != 2 || !strings.Contains(stderr, "apiVersion: required") {
		t.Fatalf("invalid policy: exit %d, %q", code, stderr)
	}
	// No certificate: a usage error naming what is needed.
	if _, stderr, code := runStrait(t, nil, "state", "list", "--control", info.Clusters[0].Control); code != 2 || !strings.Contains(stderr, "--cert") {
		t.Fatalf("no certificate: exit %d, %q", code, stderr)
	}

	fo := write("failover.json", `{"priority":["eu-west-2","eu-central-1"]}`)
	if out, stderr, code := runStrait(t, nil, "state", "put", "--config", cfg, "failover", "demo/ledger", fo); code != 0 || !strings.Contains(out, "failover demo/ledger written at index") {
		t.Fatalf("put: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code := runStrait(t, nil, "state", "get", "--consistent", "--config", info.Clusters[3].CLIConfig, "failover", "demo/ledger")
	if code != 0 || !strings.Contains(out, `{"priority":["eu-west-2","eu-central-1"]}`) || !strings.Contains(out, "by spiffe://strait.local/operator/dev") {
		t.Fatalf("get: exit %d, %q %q", code, out, stderr)
	}
	snap := filepath.Join(dir, "state.snap")
	if out, stderr, code := runStrait(t, nil, "state", "snapshot", "save", "--config", cfg, snap); code != 0 || !strings.Contains(out, "saved the state at index") {
		t.Fatalf("save: exit %d, %q %q", code, out, stderr)
	}
	if _, _, code := runStrait(t, nil, "state", "delete", "--config", cfg, "failover", "demo/ledger"); code != 0 {
		t.Fatalf("delete: exit %d", code)
	}
	// The policy, the failover record and eu-west-2's spent join token.
	if out, stderr, code := runStrait(t, nil, "state", "snapshot", "restore", "--config", cfg, snap); code != 0 || !strings.Contains(out, "restored 3 records at index") {
		t.Fatalf("restore: exit %d, %q %q", code, out, stderr)
	}
	out, _, code = runStrait(t, nil, "state", "history", "--config", cfg, "failover", "demo/ledger")
	if code != 0 || strings.Count(out, "\n") != 5 || !strings.Contains(out, " put ") || !strings.Contains(out, " delete ") {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
	data, _ := os.ReadFile(snap)
	data[len(data)-2] ^= 0x40
	corrupt := write("corrupt.snap", string(data))
	if _, stderr, code := runStrait(t, nil, "state", "snapshot", "restore", "--config", cfg, corrupt); code != 2 || !strings.Contains(stderr, "checksum mismatch") {
		t.Fatalf("corrupted restore: exit %d, %q", code, stderr)
	}
}

// TestPolicyFourEyes: with approvals required, `strait policy apply`
// is refused; `propose` prints the digest, `pending` lists it, the
// proposer cannot approve, and a second operator's `approve` applies it.
func TestPolicyFourEyes(t *testing.T) {
	_, d := startDev(t)
	info := d.Info()
	dir := t.TempDir()
	// Operators alice (the dev operator's files) and bob (issued here).
	alice := info.Clusters[0].CLIConfig
	bobDir := filepath.Join(dir, "bob")
	if err := d.CA.WriteIDFiles(bobDir, identity.ID{Role: identity.RoleOperator, Name: "bob"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	bob := []string{"--control", d.Gateway(info.Clusters[1].Name).ControlAddr(), "--cert", filepath.Join(bobDir, "cert.pem"),
		"--key", filepath.Join(bobDir, "key.pem"), "--ca", filepath.Join(bobDir, "ca.pem")}
	gov := filepath.Join(dir, "governance.json")
	if err := os.WriteFile(gov, []byte(`{"approvals": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := runStrait(t, nil, "state", "put", "--config", alice, "governance", "policy", gov); code != 0 {
		t.Fatalf("put governance: exit %d %q %q", code, out, stderr)
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(strings.Replace(lab.SamplePolicy, "default: allow", "default: deny", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runStrait(t, nil, "policy", "apply", "--config", alice, policy); code != 1 || !strings.Contains(stderr, "rule approvals-required") {
		t.Fatalf("apply with approvals required: exit %d, %q", code, stderr)
	}
	out, stderr, code := runStrait(t, nil, "policy", "propose", "--config", alice, policy)
	m := regexp.MustCompile(`digest (sha256:[0-9a-f]{64})\n`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("propose: exit %d, %q %q", code, out, stderr)
	}
	if out, _, code := runStrait(t, nil, "policy", "pending", "--config", alice); code != 0 || !strings.Contains(out, "policy default  digest "+m[1]) ||
		!strings.Contains(out, "proposed by spiffe://strait.local/operator/dev") || !strings.Contains(out, "0 of 1 approvals") {
		t.Fatalf("pending: exit %d\n%s", code, out)
	}
	if _, stderr, code := runStrait(t, nil, "policy", "approve", "--config", alice, "default", m[1]); code != 1 || !strings.Contains(stderr, "rule four-eyes") {
		t.Fatalf("the proposer approves: exit %d, %q", code, stderr)
	}
	if out, stderr, code := runStrait(t, nil, append([]string{"policy", "approve", "default", m[1]}, bob...)...); code != 0 || !strings.Contains(out, "approved at index") {
		t.Fatalf("bob approves: exit %d, %q %q", code, out, stderr)
	}
	if out, _, _ := runStrait(t, nil, "policy", "pending", "--config", alice); !strings.Contains(out, "no pending proposals") {
		t.Errorf("pending after the approval:\n%s", out)
	}
	out, _, code = runStrait(t, nil, "state", "get", "--consistent", "--config", alice, "policy", "default")
	if code != 0 || !strings.Contains(out, "default: deny") || !strings.Contains(out, "by spiffe://strait.local/operator/dev") {
		t.Errorf("policy after the approval: exit %d\n%s", code, out)
	}
}
