package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/lab"
)

// The test binary doubles as the strait binary so exit codes are real.
func TestMain(m *testing.M) {
	if os.Getenv("STRAIT_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runStrait(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "STRAIT_TEST_RUN_MAIN=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run strait %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// startDev starts a dev federation on free ports for t and stops it when
// t ends. ctx bounds the start and whatever the test waits for.
func startDev(t *testing.T) (ctx context.Context, d *lab.Dev) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	d, err := lab.StartDev(ctx, lab.DevOptions{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return ctx, d
}

const goodConfig = `cluster: eu-west-1
region: eu-west
listen:
  data: 127.0.0.1:15443
  admin: 127.0.0.1:15000
tls: {cert: c.pem, key: k.pem, ca: ca.pem}
gossip: {key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGatewayConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		env  []string
		want string // after "<file>"
	}{
		{"unknown key", goodConfig + "listen_admin: x\n", nil,
			`:8:1: key listen_admin: unknown key`},
		{"unknown nested key with suggestion", strings.Replace(goodConfig, "  admin:", "  admn:", 1), nil,
			`:5:3: key listen.admn: unknown key (did you mean "admin"?)`},
		{"wrong type", goodConfig + "timeouts:\n  connect: soon\n", nil,
			`:9:12: key timeouts.connect: expected a duration like "2s", found "soon"`},
		{"gossip without key", strings.Replace(goodConfig, "gossip: {key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n", "", 1), nil,
			`: key gossip.key: required: gossip is encrypted`},
		{"wrong type list", strings.Replace(goodConfig, "gossip: {", "gossip: {join: 10.0.0.1:7946, ", 1), nil,
			`:7:16: key gossip.join: expected a list of strings`},
		{"missing required value", strings.Replace(goodConfig, "region: eu-west\n", "", 1), nil,
			`: key region: required value missing`},
		{"port clash", strings.Replace(goodConfig, "127.0.0.1:15000", "127.0.0.1:15443", 1), nil,
			`:5:3: key listen.admin: address 127.0.0.1:15443 clashes with listen.data (127.0.0.1:15443)`},
		{"admin open to the network", strings.Replace(goodConfig, "127.0.0.1:15000", "0.0.0.0:15000", 1), nil,
			`:5:3: key listen.admin: 0.0.0.0:15000 is not a loopback address and admin.tokenFile is not set`},
		{"admin open through the environment", goodConfig, []string{"STRAIT_LISTEN_ADMIN=10.0.0.5:15000"},
			`env STRAIT_LISTEN_ADMIN: key listen.admin: 10.0.0.5:15000 is not a loopback address`},
		{"yaml syntax", goodConfig + "services: [\n", nil,
			`:9:`},
		{"wrong type from environment", goodConfig, []string{"STRAIT_TIMEOUTS_DRAIN=later"},
			`env STRAIT_TIMEOUTS_DRAIN: key timeouts.drain: expected a duration like "2s", found "later"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			_, stderr, code := runStrait(t, tc.env, "gateway", "--config", path, "--check")
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			want := tc.want
			if !strings.HasPrefix(want, "env ") {
				want = path + want
			}
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr does not contain %q:\n%s", want, stderr)
			}
		})
	}
}

func TestGatewayConfigCheckOK(t *testing.T) {
	for _, f := range []string{"../../deploy/examples/gateway.yaml", "../../deploy/examples/gateway-minimal.yaml"} {
		out, stderr, code := runStrait(t, nil, "gateway", "--config", f, "--check")
		if code != 0 || !strings.Contains(out, "configuration is valid") {
			t.Errorf("%s: exit %d\n%s%s", f, code, out, stderr)
		}
	}
	// Flags override the file.
	out, _, code := runStrait(t, nil, "gateway", "--config", writeConfig(t, goodConfig), "--check", "--cluster", "eu-west-9")
	if code != 0 || !strings.Contains(out, "cluster eu-west-9") {
		t.Errorf("flag override: exit %d, %s", code, out)
	}
	// Missing file is a config error too.
	_, stderr, code := runStrait(t, nil, "gateway", "--config", "/nonexistent/gw.yaml", "--check")
	if code != 2 || !strings.Contains(stderr, "/nonexistent/gw.yaml") {
		t.Errorf("missing file: exit %d, %s", code, stderr)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	_, stderr, code := runStrait(t, nil, "status", "--no-such-flag")
	if code != 2 || !strings.Contains(stderr, "unknown flag: --no-such-flag") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := runStrait(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "strait ") {
		t.Fatalf("exit %d: %q", code, out)
	}
}

func TestStatusAgainstLiveGateway(t *testing.T) {
	_, d := startDev(t)
	adminAddr := d.Gateway("eu-central-1").AdminAddr()

	out, stderr, code := runStrait(t, nil, "status", "--admin", adminAddr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"Gateway eu-central-1", "MEMBER", "us-east-1", "demo/ledger", "data-class=pii-eu", "IMPORT",
		"passthrough " + d.Gateway("eu-central-1").PassthroughAddr()} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}

	out, _, code = runStrait(t, []string{"STRAIT_ADMIN=" + adminAddr}, "status", "-o", "json")
	var st admin.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status -o json: exit %d: %s", code, out)
	}
	if st.Cluster != "eu-central-1" || len(st.Clusters) != 4 || len(st.Members) != 4 {
		t.Fatalf("status json: cluster %s, %d clusters, %d members", st.Cluster, len(st.Clusters), len(st.Members))
	}

	_, stderr, code = runStrait(t, nil, "status", "--admin", "127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Fatalf("unreachable admin: exit %d: %s", code, stderr)
	}
}

func TestDevRunsForDurationAndWritesInfo(t *testing.T) {
	info := filepath.Join(t.TempDir(), "info.json")
	out, stderr, code := runStrait(t, nil, "dev", "--ephemeral", "--duration", "2s", "--info", info)
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"eu-west-1", "eu-west-2", "eu-central-1", "us-east-1", "curl -s -p -x", "ledger.demo.svc.clusterset.local:8080",
		"PASSTHROUGH", "-servername outbound_.8080_._.ledger.demo.svc.cluster.local", "Stopping"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(info)
	if err != nil {
		t.Fatal(err)
	}
	var in lab.Info
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Clusters) != 4 || !strings.HasSuffix(in.MeshCA, "mesh-ca.pem") {
		t.Fatalf("info lists %d clusters, mesh CA %q", len(in.Clusters), in.MeshCA)
	}
	for _, c := range in.Clusters {
		if c.Region == "" || c.Admin == "" || c.Connect == "" || c.Passthrough == "" || len(c.Imports) != 3 {
			t.Errorf("info for %s incomplete: %+v", c.Name, c)
		}
	}
}

func TestKeysRotationThroughCLI(t *testing.T) {
	_, d := startDev(t)
	adminAddr := d.Gateway("us-east-1").AdminAddr()
	env := []string{"STRAIT_ADMIN=" + adminAddr}

	oldKey := d.Gateway("us-east-1").Config().Gossip.Key
	fingerprint := func(key string) string {
		t.Helper()
		out, stderr, code := runStrait(t, nil, "keys", "fingerprint", key)
		if code != 0 || !strings.HasPrefix(out, "sha256:") {
			t.Fatalf("keys fingerprint: exit %d %q %s", code, out, stderr)
		}
		return strings.TrimSpace(out)
	}
	oldPrint := fingerprint(oldKey)
	out, _, code := runStrait(t, env, "keys", "list")
	if code != 0 || out != oldPrint+"  (primary)\n" || strings.Contains(out, oldKey) {
		t.Fatalf("keys list: %d %q, want the fingerprint %s only", code, out, oldPrint)
	}
	newKey, _, code := runStrait(t, nil, "keys", "generate")
	newKey = strings.TrimSpace(newKey)
	if code != 0 || len(newKey) != 44 {
		t.Fatalf("generate: %q", newKey)
	}
	newPrint := fingerprint(newKey)
	for _, step := range [][]string{{"install", newKey, newPrint}, {"use", newKey, newPrint}, {"remove", oldKey, oldPrint}} {
		out, stderr, code := runStrait(t, env, "keys", step[0], step[1])
		if code != 0 || !strings.Contains(out, step[0]+" "+step[2]+": applied on 4 gateways") || strings.Contains(out, step[1]) {
			t.Fatalf("keys %s: exit %d\n%s%s", step[0], code, out, stderr)
		}
	}
	if out, _, _ := runStrait(t, env, "keys", "list"); out != newPrint+"  (primary)\n" {
		t.Fatalf("keys list after rotation: %q, want %s", out, newPrint)
	}
	for _, name := range d.Clusters() {
		ks, err := d.Gateway(name).Catalog().Keys()
		if err != nil || ks.Primary != newKey || len(ks.Keys) != 1 {
			t.Fatalf("%s after rotation: %+v %v", name, ks, err)
		}
	}
	_, stderr, code := runStrait(t, env, "keys", "install", "not-base64!")
	if code != 2 || !strings.Contains(stderr, "not base64") {
		t.Fatalf("bad key: exit %d %s", code, stderr)
	}
	_, stderr, code = runStrait(t, env, "keys", "remove", newKey)
	if code != 1 || !strings.Contains(stderr, "primary") {
		t.Fatalf("removing the primary: exit %d %s", code, stderr)
	}
}

// TestDevNamesTheAddressInUse: `strait dev` while another process holds
// one of its ports (here the third gateway's data port, so two gateways
// and the demo services are up when it fails) exits non-zero with a
// message naming the address, after stopping what it started.
func TestDevNamesTheAddressInUse(t *testing.T) {
	const taken = "127.0.3.1:15443"
	hold, err := net.Listen("tcp", taken)
	if err != nil {
		t.Fatalf("hold %s: %v", taken, err)
	}
	defer hold.Close()
	out, stderr, code := runStrait(t, nil, "dev", "--duration", "30s")
	if code == 0 {
		t.Fatalf("strait dev started with %s taken:\n%s", taken, out)
	}
	if !strings.Contains(stderr, taken) || !strings.Contains(stderr, "address already in use") || strings.Contains(stderr, "panic") {
		t.Fatalf("exit %d; stderr does not name %s in use:\n%s", code, taken, stderr)
	}
	// Nothing it started is left: the first gateway's ports bind again.
	for _, a := range []string{"127.0.1.1:15443", "127.0.1.1:15000", "127.0.1.11:8080"} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still bound after strait dev failed: %v", a, err)
			continue
		}
		ln.Close()
	}
}

// caWithGateway runs `strait ca init` in dir/ca and, unless cluster is
// empty, `strait ca issue` for a gateway of cluster in region into
// dir/tls; it returns both directories.
func caWithGateway(t *testing.T, dir, cluster, region string) (caDir, tlsDir string) {
	t.Helper()
	caDir, tlsDir = filepath.Join(dir, "ca"), filepath.Join(dir, "tls")
	if _, stderr, code := runStrait(t, nil, "ca", "init", "--dir", caDir); code != 0 {
		t.Fatalf("ca init: %s", stderr)
	}
	if cluster == "" {
		return caDir, ""
	}
	if _, stderr, code := runStrait(t, nil, "ca", "issue", "--dir", caDir, "--cluster", cluster, "--region", region, "--out", tlsDir); code != 0 {
		t.Fatalf("ca issue: %s", stderr)
	}
	return caDir, tlsDir
}

// TestGatewayCheckReadsTheServicesFile: --check with discovery.source file
// reads the services file too, and a bad one exits 2 naming file, line and
// key.
func TestGatewayCheckReadsTheServicesFile(t *testing.T) {
	cfg := goodConfig + "discovery: {source: file, file: {path: ../../deploy/examples/services.yaml}}\n"
	out, stderr, code := runStrait(t, nil, "gateway", "--config", writeConfig(t, cfg), "--check")
	if code != 0 || !strings.Contains(out, "services.yaml: valid services file (2 services)") {
		t.Errorf("good services file: exit %d\n%s%s", code, out, stderr)
	}
	bad := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(bad, []byte("services:\n  - {namespace: demo, name: x, ports: [{port: 0}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = goodConfig + "discovery: {source: file, file: {path: " + bad + "}}\n"
	_, stderr, code = runStrait(t, nil, "gateway", "--config", writeConfig(t, cfg), "--check")
	if code != 2 || !strings.Contains(stderr, bad+":2:") || !strings.Contains(stderr, "key services.0.ports.0.port") {
		t.Errorf("bad services file: exit %d\n%s", code, stderr)
	}
}
