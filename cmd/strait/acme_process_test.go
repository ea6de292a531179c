package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/pebbletest"
)

// TestGatewayProcessesACME runs two `strait gateway` processes on
// tls.source acme from config files, as an operator would, against a
// Pebble directory in the test process (a by HTTP-01, b by TLS-ALPN-01;
// Pebble resolves the gateways' names to loopback and connects to the
// processes' challenge listeners). Their certificates live 9 s: both
// renew while new connections run through a's import port to a service
// only b exports, every one its own mTLS handshake, none failing; `strait
// status` shows the acme certificate and its renewals.
func TestGatewayProcessesACME(t *testing.T) {
	const (
		suffix   = "gw.strait.test"
		lifetime = 9 * time.Second
	)
	pb := pebbletest.Start(t, suffix, lifetime)
	dir := t.TempDir()
	dirRoots, pebbleRoots := filepath.Join(dir, "directory-roots.pem"), filepath.Join(dir, "pebble-roots.pem")
	for path, data := range map[string][]byte{dirRoots: pb.DirectoryRootsPEM(), pebbleRoots: pb.RootsPEM()} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	svc := startLineEcho(t)
	_, svcPort, _ := net.SplitHostPort(svc)

	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	type ports struct{ data, admin, gossip, imp int }
	pa := ports{freePort(t), freePort(t), freePort(t), freePort(t)}
	pbp := ports{freePort(t), freePort(t), freePort(t), freePort(t)}
	write := func(name, region, challenge string, p ports, extra string) string {
		cfg := fmt.Sprintf(`cluster: %[1]s
region: %[2]s
trustDomain: acme.strait.test
listen: {data: "127.0.0.1:%[3]d", admin: "127.0.0.1:%[4]d", connect: "", passthrough: ""}
tls:
  source: acme
  ca: %[5]s
  storage: %[6]s
  renewCheck: 250ms
  acme:
    directory: %[7]s
    email: ops@strait.test
    agreeToTerms: true
    roots: %[8]s
    challenges: [%[9]s]
    listenHost: 127.0.0.1
    httpPort: %[10]d
    tlsALPNPort: %[11]d
    dnsSuffix: %[12]s
    serverAuthAsClient: true
gossip: {bind: "127.0.0.1:%[13]d", key: %[14]s, profile: local, join: ["127.0.0.1:%[15]d"]}
tunnels: {enabled: false}
timeouts: {connect: 1s, budget: 2s, drain: 2s}
%[16]s`, name, region, p.data, p.admin, pebbleRoots, filepath.Join(dir, "certificates-"+name), pb.Directory, dirRoots, challenge,
			pb.HTTPPort, pb.TLSALPNPort, suffix, p.gossip, key, pbp.gossip, extra)
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := runStrait(t, nil, "gateway", "--config", path, "--check"); code != 0 {
			t.Fatalf("check %s: %s", path, stderr)
		}
		return path
	}
	cfgB := write("b", "eu-west", identity.ChallengeTLSALPN01, pbp, fmt.Sprintf(`services:
  - namespace: demo
    name: lines
    ports: [{port: 7000, targetPort: %s}]
    endpoints: [127.0.0.1]
`, svcPort))
	cfgA := write("a", "eu-central", identity.ChallengeHTTP01, pa, fmt.Sprintf(`imports:
  - {service: demo/lines, port: 7000, listen: "127.0.0.1:%d"}
`, pa.imp))
	b := startGatewayProc(t, cfgB)
	a := startGatewayProc(t, cfgA)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("a stderr:\n%s\nb stderr:\n%s", a.stderr, b.stderr)
		}
	})
	adminA, adminB := fmt.Sprintf("127.0.0.1:%d", pa.admin), fmt.Sprintf("127.0.0.1:%d", pbp.admin)
	imp := fmt.Sprintf("127.0.0.1:%d", pa.imp)
	status := func(addr string) admin.Status {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, _ := admin.FetchStatus(ctx, addr)
		return st
	}

	// Ready once each holds its certificate and a has learned b's service
	// and reaches it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		sa, sb := status(adminA), status(adminB)
		if sa.Certificate != nil && sb.Certificate != nil && askLine(imp) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateways never federated: a %+v, b %+v", sa.Certificate, sb.Certificate)
		}
		time.Sleep(100 * time.Millisecond)
	}
	first := map[string]string{}
	for name, addr := range map[string]string{"a": adminA, "b": adminB} {
		c := status(addr).Certificate
		if c.Source != identity.SourceACME || c.Renewals != 0 {
			t.Fatalf("%s: certificate %+v, want source acme, not yet renewed", name, c)
		}
		first[name] = c.Serial
	}

	var made, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := askLine(imp)
			made.Add(1)
			if err != nil {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
			}
		}
	}()
	renewed := func() bool {
		ca, cb := status(adminA).Certificate, status(adminB).Certificate
		return ca != nil && cb != nil && ca.Renewals >= 1 && cb.Renewals >= 1
	}
	deadline = time.Now().Add(lifetime + 5*time.Second)
	for !renewed() {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("no renewal within %s: a %+v, b %+v", lifetime+5*time.Second, status(adminA).Certificate, status(adminB).Certificate)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // connections made after the renewals
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d new connections failed across the renewals; first: %v", failed.Load(), made.Load(), firstErr)
	}
	if made.Load() < 50 {
		t.Fatalf("only %d connections made across the renewals", made.Load())
	}
	for name, addr := range map[string]string{"a": adminA, "b": adminB} {
		out, stderr, code := runStrait(t, nil, "status", "--admin", addr)
		if code != 0 {
			t.Fatalf("status of %s: exit %d: %s", name, code, stderr)
		}
		c := status(addr).Certificate
		if c.Serial == first[name] || c.Failures != 0 {
			t.Fatalf("%s: certificate after renewal %+v (first serial %s)", name, c, first[name])
		}
		line := ""
		for l := range strings.Lines(out) {
			if strings.Contains(l, "certificate:") {
				line = strings.TrimSpace(l)
			}
		}
		for _, want := range []string{"from acme", "serial " + c.Serial, "next renewal", fmt.Sprintf("%d renewals", c.Renewals)} {
			if !strings.Contains(line, want) {
				t.Fatalf("strait status of %s: certificate line %q lacks %q", name, line, want)
			}
		}
		t.Logf("%s: %s", name, line)
	}
	t.Logf("%d new connections through processes, none failed, across renewals of a (%s) and b (%s)", made.Load(), first["a"], first["b"])
}

// startLineEcho serves "b <length>\n" for every line read, until the
// test ends.
func startLineEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := fmt.Fprintf(c, "b %d\n", len(line)-1); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// askLine asks one question on a connection of its own through addr and
// checks b answered it.
func askLine(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "xyz\n"); err != nil {
		return err
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	if answer != "b 3\n" {
		return fmt.Errorf("answer %q, want b's", answer)
	}
	return nil
}
