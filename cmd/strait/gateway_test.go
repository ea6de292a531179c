package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/freeport"
	"github.com/straitmesh/strait/lab"
)

func freePort(t *testing.T) int { return freeport.Get(t) }

type gwProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan error
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startGatewayProc(t *testing.T, config string) *gwProc {
	t.Helper()
	p := &gwProc{stderr: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], "gateway", "--config", config)
	p.cmd.Env = append(os.Environ(), "STRAIT_TEST_RUN_MAIN=1")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// TestGatewayProcessesFederate runs two `strait gateway` processes the way
// an operator would: certificates from `strait ca`, YAML configs, then a
// request through one gateway to a service only the other exports, then
// SIGTERM for a clean shutdown.
func TestGatewayProcessesFederate(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, stderr, code := runStrait(t, nil, "ca", "init", "--dir", caDir); code != 0 {
		t.Fatalf("ca init: %s", stderr)
	}
	mesh, err := lab.NewMeshCA("test mesh CA")
	if err != nil {
		t.Fatal(err)
	}
	ledgerCert, err := mesh.Issue("ledger in b", "ledger.demo.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	demo, err := lab.StartDemoTLS("127.0.0.1:0", "demo/ledger", "b", "eu-west", &ledgerCert)
	if err != nil {
		t.Fatal(err)
	}
	defer demo.Close()
	_, demoPort, _ := net.SplitHostPort(demo.Addr())

	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	type ports struct{ data, admin, connect, gossip, control, raft, passthrough int }
	pa := ports{freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)}
	pb := ports{freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)}
	write := func(name, region string, p ports, extra string) string {
		out := filepath.Join(dir, name)
		args := []string{"ca", "issue", "--dir", caDir, "--cluster", name, "--region", region, "--out", out}
		if strings.Contains(extra, "voter: true") {
			args = append(args, "--voter")
		}
		if _, stderr, code := runStrait(t, nil, args...); code != 0 {
			t.Fatalf("ca issue: %s", stderr)
		}
		cfg := fmt.Sprintf(`cluster: %[1]s
region: %[2]s
listen: {data: "127.0.0.1:%[3]d", admin: "127.0.0.1:%[4]d", connect: "127.0.0.1:%[5]d", control: "127.0.0.1:%[11]d", passthrough: "127.0.0.1:%[12]d"}
tls: {cert: %[7]s/cert.pem, key: %[7]s/key.pem, ca: %[7]s/ca.pem}
gossip: {bind: "127.0.0.1:%[6]d", key: %[8]s, profile: local, join: ["127.0.0.1:%[9]d"]}
timeouts: {connect: 1s, budget: 2s, drain: 2s}
%[10]s`, name, region, p.data, p.admin, p.connect, p.gossip, out, key, pb.gossip, extra, p.control, p.passthrough)
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := runStrait(t, nil, "gateway", "--config", path, "--check"); code != 0 {
			t.Fatalf("check %s: %s", path, stderr)
		}
		return path
	}
	// b bootstraps the routing state alone; a joins it as a non-voter.
	cfgB := write("b", "eu-west", pb, fmt.Sprintf("state: {dataDir: %q, bind: \"127.0.0.1:%d\", voter: true, bootstrapExpect: 1}\n", filepath.Join(dir, "state-b"), pb.raft)+fmt.Sprintf(`services:
  - namespace: demo
    name: ledger
    ports: [{port: 8080, targetPort: %s}]
    endpoints: [127.0.0.1]
`, demoPort))
	cfgA := write("a", "eu-central", pa, fmt.Sprintf("state: {dataDir: %q, bind: \"127.0.0.1:%d\", join: [\"127.0.0.1:%d\"]}\n", filepath.Join(dir, "state-a"), pa.raft, pb.control))

	b := startGatewayProc(t, cfgB)
	a := startGatewayProc(t, cfgA)
	adminA := fmt.Sprintf("127.0.0.1:%d", pa.admin)

	// Ready once a has joined b and learned its catalog.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, code := runStrait(t, nil, "status", "--admin", adminA, "-o", "json")
		if code == 0 && strings.Contains(out, `"demo/ledger"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a never learned b's catalog; a stderr:\n%s\nb stderr:\n%s", a.stderr, b.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Ready once the routing state is loaded too.
	for {
		resp, err := http.Get("http://" + adminA + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("a /readyz: %v %v", resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pa.connect), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT ledger.demo.svc.clusterset.local:8080 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	r1, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || r1.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", r1, err)
	}
	r2, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r2.Body)
	c.Close() // done: an open client connection would hold b's drain below
	var reply lab.Reply
	if err := json.Unmarshal(body, &reply); err != nil || reply.Cluster != "b" {
		t.Fatalf("reply %s (%v)", body, err)
	}

	// TLS passthrough: the demo service's own TLS, routed by SNI through
	// a's passthrough port, verified with the mesh CA.
	sni := "outbound_.8080_._.ledger.demo.svc.cluster.local"
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", pa.passthrough), &tls.Config{
		ServerName: sni, InsecureSkipVerify: true, VerifyConnection: mesh.VerifyName("ledger.demo.svc.cluster.local")})
	if err != nil {
		t.Fatalf("TLS through a's passthrough port: %v\na stderr:\n%s", err, a.stderr)
	}
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(tc, "GET /tls HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n\r\n")
	r3, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(r3.Body)
	tc.Close()
	if err := json.Unmarshal(body, &reply); err != nil || reply.Cluster != "b" || !reply.TLS || reply.SNI != sni || reply.Path != "/tls" {
		t.Fatalf("passthrough reply %s (%v)", body, err)
	}

	// The routing state: a gateway's own certificate may not write it; an
	// operator's, issued by strait ca, applies a policy through the
	// non-voter a, and it is read back from b.
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: eu-data}\nspec: {default: allow}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runStrait(t, nil, "policy", "apply", "--config", cfgA, policy); code != 1 || !strings.Contains(stderr, "permission denied") ||
		!strings.Contains(stderr, "rule operator-writes") {
		t.Fatalf("policy apply with gateway a's certificate: exit %d, %q; want permission denied", code, stderr)
	}
	opsDir := filepath.Join(dir, "ops")
	if _, stderr, code := runStrait(t, nil, "ca", "issue", "--dir", caDir, "--operator", "alice", "--out", opsDir); code != 0 {
		t.Fatalf("ca issue --operator: %s", stderr)
	}
	cfgOps := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(cfgOps, fmt.Appendf(nil, "cluster: a\nregion: eu-central\nlisten: {control: \"127.0.0.1:%d\"}\ntls: {cert: %q, key: %q, ca: %q}\n",
		pa.control, filepath.Join(opsDir, "cert.pem"), filepath.Join(opsDir, "key.pem"), filepath.Join(opsDir, "ca.pem")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runStrait(t, nil, "policy", "apply", "--config", cfgOps, policy)
	if code != 0 || !strings.HasPrefix(out, "policy eu-data applied at index ") {
		t.Fatalf("policy apply through a: exit %d, %q %q\na stderr:\n%s", code, out, stderr, a.stderr)
	}
	index := strings.TrimSpace(strings.TrimPrefix(out, "policy eu-data applied at index "))
	out, stderr, code = runStrait(t, nil, "state", "get", "--consistent", "--config", cfgB, "policy", "eu-data")
	if code != 0 || !strings.Contains(out, "# policy eu-data at index "+index+" ") {
		t.Fatalf("state get from b: exit %d, %q %q", code, out, stderr)
	}
	if out, _, _ := runStrait(t, nil, "status", "--admin", adminA); !strings.Contains(out, "routing state: follower (non-voter), leader b-") ||
		!strings.Contains(out, fmt.Sprintf("passthrough 127.0.0.1:%d", pa.passthrough)) ||
		!strings.Contains(out, "certificate: spiffe://strait.local/gateway/region/eu-central/cluster/a from files, serial ") ||
		!strings.Contains(out, "trust: strait.local (1 roots); revoked 0 serials, 0 identities") {
		t.Errorf("status of a:\n%s", out)
	}

	// SIGTERM drains: a stream open through b keeps working until its
	// client is done, and b then stops without waiting for the deadline.
	held, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pa.connect), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	held.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(held, "CONNECT ledger.demo.svc.clusterset.local:8080 HTTP/1.1\r\nHost: x\r\n\r\n")
	hr := bufio.NewReader(held)
	if r, err := http.ReadResponse(hr, &http.Request{Method: http.MethodConnect}); err != nil || r.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", r, err)
	}
	get := func(path string) {
		t.Helper()
		fmt.Fprintf(held, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		r, err := http.ReadResponse(hr, nil)
		if err != nil {
			t.Fatalf("GET %s on the held stream: %v\nb stderr:\n%s", path, err, b.stderr)
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &reply); err != nil || reply.Cluster != "b" || reply.Path != path {
			t.Fatalf("GET %s on the held stream: %s (%v)", path, body, err)
		}
	}
	get("/before")
	b.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-b.done:
		b.done <- err
		t.Fatalf("b exited (%v) with a stream open\n%s", err, b.stderr)
	default:
	}
	get("/during-drain")
	held.Close()
	select {
	case err := <-b.done:
		b.done <- err
		if err != nil || strings.Contains(b.stderr.String(), "drain deadline passed") || !strings.Contains(b.stderr.String(), "gateway stopped") {
			t.Errorf("b after its last stream: exit %v\n%s", err, b.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("b still running 15s after SIGTERM")
	}

	for name, p := range map[string]*gwProc{"a": a, "b": b} {
		if name == "b" {
			continue
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			p.done <- err // for Cleanup
			if err != nil {
				t.Errorf("gateway %s exited with %v after SIGTERM:\n%s", name, err, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), "gateway stopped") {
				t.Errorf("gateway %s did not log a clean stop:\n%s", name, p.stderr)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("gateway %s still running 15s after SIGTERM", name)
		}
	}
}
