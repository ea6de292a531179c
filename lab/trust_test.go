package lab_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/lab"
)

// trustLab starts a lab with the routing state: voter a imports
// demo/ledger, which b (a non-voter) serves.
func trustLab(t *testing.T, noTunnels bool, auditDir string) *lab.Lab {
	t.Helper()
	ledger := startDemo(t, "demo/ledger", "b", "eu-west", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{State: true, NoTunnels: noTunnels, AuditDir: auditDir,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-west", Voter: true, Imports: []gateway.Import{{Service: "demo/ledger", Port: 8080, Listen: "127.0.0.1:0"}}},
			{Name: "b", Region: "eu-west", Services: []discovery.Service{ledger}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func write(t *testing.T, c *state.ControlClient, req *state.WriteRequest) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Write(ctx, req)
	if err != nil {
		t.Fatalf("write %s %s/%s: %v", req.Op, req.Kind, req.Key, err)
	}
	return resp.Index
}

func pemOf(cas ...*identity.CA) string {
	var b strings.Builder
	for _, ca := range cas {
		b.Write(ca.CertPEM())
	}
	return b.String()
}

func trustRecord(t *testing.T, clusters []string, cas ...*identity.CA) string {
	t.Helper()
	b, err := state.ParseTrust([]byte(pemOf(cas...)))
	if err != nil {
		t.Fatal(err)
	}
	b.Clusters = clusters
	return b.Encode()
}

func revoke(t *testing.T, c *state.ControlClient, r state.Revocation) uint64 {
	t.Helper()
	b, err := jsonOf(r)
	if err != nil {
		t.Fatal(err)
	}
	return write(t, c, &state.WriteRequest{Op: state.OpPut, Kind: state.KindRevocation, Key: state.RevocationKey(r), Value: b})
}

// handshake dials addr with cert as the client certificate, asks for the
// ledger as a stream of its own and returns the gateway's answer line, or
// the error that ended the handshake.
func handshake(addr string, cert *tls.Certificate) (string, error) {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		ServerName: wire.Target{Namespace: "demo", Name: "ledger", Port: 8080}.SNI()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	// TLS 1.3: the server judges the client certificate after the
	// client's handshake returned; a refusal arrives on the first read.
	return bufio.NewReader(c).ReadString('\n')
}

// refusedReasons returns the reasons strait_identity_peer_refused_total
// has a sample for.
func refusedReasons(t *testing.T, g *gateway.Gateway) map[string]bool {
	t.Helper()
	mfs, err := g.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "strait_identity_peer_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" {
					out[lp.GetValue()] = true
				}
			}
		}
	}
	return out
}

func refused(t *testing.T, g *gateway.Gateway, r identity.Reason) float64 {
	return metricValue(t, g, "strait_identity_peer_refused_total", map[string]string{"reason": string(r)})
}

// TestPeerRefusalsByReason: one real mTLS handshake with the data port of
// a gateway per shape of certificate it must refuse, each refused for its
// reason and counted under it (every reason starts at zero), and audited;
// a gateway of a second trust domain, trusted for its cluster only, is
// let in as the control row.
func TestPeerRefusalsByReason(t *testing.T) {
	auditDir := t.TempDir()
	l := trustLab(t, false, auditDir)
	b := l.Gateway("b")
	for _, r := range identity.Reasons {
		if !refusedReasons(t, b)[string(r)] {
			t.Errorf("strait_identity_peer_refused_total{reason=%q} is not initialised", r)
		}
	}
	ops := opsControl(t, l, "a")
	partner, err := identity.NewCA("partner.example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.NewCA("other.example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	gw := func(cluster string) identity.ID {
		return identity.ID{Role: identity.RoleGateway, Region: "eu-west", Cluster: cluster}
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	issue := func(ca *identity.CA, spec identity.CertSpec) *tls.Certificate {
		t.Helper()
		if spec.NotAfter.IsZero() {
			spec.NotBefore, spec.NotAfter = now.Add(-time.Minute), now.Add(time.Hour)
		}
		if spec.ExtKeyUsage == nil {
			spec.ExtKeyUsage = both
		}
		c, err := ca.IssueSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	revokedSerial := issue(l.CA, identity.CertSpec{ID: gw("x")})
	revokedID := gw("y")
	revokedID.TrustDomain = l.CA.TrustDomain

	write(t, ops, &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: "partner.example", Value: trustRecord(t, []string{"p1"}, partner)})
	revoke(t, ops, state.Revocation{Serial: identity.SerialHex(revokedSerial.Leaf), Reason: "test"})
	revoke(t, ops, state.Revocation{ID: revokedID.String()})
	waitFor(t, func() bool {
		tr := l.Identity("b").Trust()
		_, partnerTrusted := tr.Domain("partner.example")
		s, i := tr.Revoked()
		return partnerTrusted && s == 1 && i == 1
	})

	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want identity.Reason // "" is let in
	}{
		{"expired", issue(l.CA, identity.CertSpec{ID: gw("a"), NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}), identity.ReasonExpired},
		{"not yet valid", issue(l.CA, identity.CertSpec{ID: gw("a"), NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}), identity.ReasonNotYetValid},
		{"wrong trust domain", issue(other, identity.CertSpec{ID: gw("a")}), identity.ReasonUnknownTrustDomain},
		{"server-only certificate as a client", issue(l.CA, identity.CertSpec{ID: gw("a"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), identity.ReasonWrongKeyUsage},
		{"revoked serial", revokedSerial, identity.ReasonRevoked},
		{"revoked spiffe id", issue(l.CA, identity.CertSpec{ID: gw("y")}), identity.ReasonRevoked},
		{"self-signed", issue(l.CA, identity.CertSpec{ID: gw("a"), SelfSigned: true}), identity.ReasonSelfSigned},
		{"foreign domain for a cluster it may not speak for", issue(partner, identity.CertSpec{ID: gw("p2")}), identity.ReasonClusterNotAllowed},
		{"foreign domain for its own cluster", issue(partner, identity.CertSpec{ID: gw("p1")}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before float64
			if tc.want != "" {
				before = refused(t, b, tc.want)
			}
			answer, err := handshake(b.DataAddr(), tc.cert)
			if tc.want == "" {
				if err != nil || answer != "OK\n" {
					t.Fatalf("answer %q, err %v; want OK", answer, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("handshake accepted (answer %q); want refused for %s", answer, tc.want)
			}
			waitFor(t, func() bool { return refused(t, b, tc.want) == before+1 })
		})
	}

	audit, err := os.ReadFile(filepath.Join(auditDir, "b.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []identity.Reason{identity.ReasonExpired, identity.ReasonClusterNotAllowed, identity.ReasonSelfSigned} {
		if !strings.Contains(string(audit), `"kind":"identity"`) || !strings.Contains(string(audit), `"reason":"`+string(r)+`"`) {
			t.Errorf("audit trail has no identity record for %s:\n%s", r, audit)
		}
	}
}

// TestCARotationThroughRoutingState: under a steady stream of new
// connections, each its own mTLS handshake between the gateways, the
// federation's CA is rotated through the routing state (new CA added to
// the own domain's record, gateway certificates re-issued from it, old CA
// removed) without one failed connection; afterwards a certificate of the
// old CA is refused.
func TestCARotationThroughRoutingState(t *testing.T) {
	l := trustLab(t, true, "")
	a, b := l.Gateway("a"), l.Gateway("b")
	own := l.CA.TrustDomain
	newCA, err := identity.NewCA(own, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// An operator of the old CA that knows both roots: it talks to the
	// gateways before and after their certificates change.
	opCert, err := l.CA.IssueID(identity.ID{Role: identity.RoleOperator, Name: "rotator"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	opID, err := identity.NewBundle(opCert, nil)
	if err != nil {
		t.Fatal(err)
	}
	bothRoots, err := identity.NewTrust([]identity.Domain{{Name: own, Roots: append(l.CA.Roots(), newCA.Roots()...)}}, identity.Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	opID.SetTrust(bothRoots)
	ops, err := state.DialControl(a.ControlAddr(), opID)
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()

	url := "http://" + a.ImportAddrs()["demo/ledger:8080"] + "/"
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(url)
				if err == nil {
					err = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = &statusError{resp.StatusCode}
					}
				}
				if err != nil {
					failed.Add(1)
					s := err.Error()
					firstErr.CompareAndSwap(nil, &s)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	roots := func(name string) int {
		d, _ := l.Identity(name).Trust().Domain(own)
		return len(d.Roots)
	}
	steady := func() {
		t.Helper()
		from := ok.Load()
		waitFor(t, func() bool { return ok.Load() >= from+20 })
	}

	steady()
	write(t, ops, &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: own, Value: pemOf(l.CA, newCA)})
	waitFor(t, func() bool { return roots("a") == 2 && roots("b") == 2 })
	steady()
	for _, name := range []string{"a", "b"} {
		id := l.Identity(name)
		cert, err := newCA.IssueID(id.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := id.SetCertificate(cert); err != nil {
			t.Fatal(err)
		}
		steady()
	}
	write(t, ops, &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: own, Value: pemOf(newCA)})
	waitFor(t, func() bool { return roots("a") == 1 && roots("b") == 1 })
	steady()
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d connections failed during the rotation; first: %s", n, n+ok.Load(), *firstErr.Load())
	}
	t.Logf("%d connections, none failed", ok.Load())

	// The old CA is gone from every gateway's trust.
	before := refused(t, b, identity.ReasonUnknownAuthority)
	old, err := l.CA.Issue("eu-west", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if answer, err := handshake(b.DataAddr(), &old); err == nil {
		t.Fatalf("a certificate of the removed CA was let in (answer %q)", answer)
	}
	waitFor(t, func() bool { return refused(t, b, identity.ReasonUnknownAuthority) == before+1 })

	// Removing the last root that verifies the gateways' own certificates
	// is refused, and so is deleting the own domain's record.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ops.Write(ctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: own, Value: pemOf(l.CA)}); err == nil || !strings.Contains(err.Error(), "own gateways") {
		t.Errorf("own record without the gateways' CA: err %v, want a refusal", err)
	}
	if _, err := ops.Write(ctx, &state.WriteRequest{Op: state.OpDelete, Kind: state.KindTrust, Key: own}); err == nil || !strings.Contains(err.Error(), "never deleted") {
		t.Errorf("delete of the own record: err %v, want a refusal", err)
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// TestSecondTrustDomainForNamedCluster: a gateway of another trust domain
// (its own CA) joins the federation's gossip; the federation trusts that
// domain for cluster p1 only. It carries traffic from the federation's
// gateway, and a certificate of that domain for another cluster is
// refused.
func TestSecondTrustDomainForNamedCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{State: true,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-west", Voter: true, Imports: []gateway.Import{{Service: "demo/partner", Port: 8080, Listen: "127.0.0.1:0"}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	a := l.Gateway("a")
	partner, err := identity.NewCA("partner.example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write(t, opsControl(t, l, "a"), &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: "partner.example", Value: trustRecord(t, []string{"p1"}, partner)})
	waitFor(t, func() bool {
		_, ok := l.Identity("a").Trust().Domain("partner.example")
		return ok
	})

	// The partner's gateway trusts its own domain and the federation's.
	svc := startDemo(t, "demo/partner", "p1", "eu-central", nil)
	cert, err := partner.Issue("eu-central", "p1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := identity.NewBundle(cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	ptrust, err := identity.NewTrust([]identity.Domain{{Name: "partner.example", Roots: partner.Roots()}, {Name: l.CA.TrustDomain, Roots: l.CA.Roots()}}, identity.Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	pid.SetTrust(ptrust)
	cfg := gateway.DefaultConfig()
	cfg.Cluster, cfg.Region, cfg.TrustDomain = "p1", "eu-central", "partner.example"
	cfg.Listen.Data, cfg.Listen.Admin, cfg.Listen.Connect, cfg.Listen.Passthrough = "127.0.0.1:0", "127.0.0.1:0", "", ""
	cfg.Gossip.Bind, cfg.Gossip.NodeName, cfg.Gossip.Profile, cfg.Gossip.Key = "127.0.0.1:0", "p1", "local", l.GossipKey()
	cfg.Gossip.Join = []string{a.GossipAddr()}
	cfg.Services = []discovery.Service{svc}
	cfg.TLS = gateway.TLSConfig{Cert: "(test)", Key: "(test)", CA: "(test)"}
	cfg.Timeouts.Drain = time.Second
	p1, err := gateway.Start(cfg, gateway.Options{Identity: pid})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p1.Shutdown(ctx)
	})
	waitFor(t, func() bool {
		for _, c := range a.Catalog().Snapshot().Clusters {
			if c.Cluster == "p1" && c.Reachable && len(c.Services) == 1 {
				return true
			}
		}
		return false
	})
	r := getJSON(t, &http.Client{Timeout: 5 * time.Second}, "http://"+a.ImportAddrs()["demo/partner:8080"]+"/")
	if r.Cluster != "p1" {
		t.Fatalf("served by %q, want p1", r.Cluster)
	}
	if n := inboundFrom(t, p1, "demo/partner:8080", "a"); n < 1 {
		t.Errorf("p1 counted %v inbound connections from a", n)
	}

	before := refused(t, a, identity.ReasonClusterNotAllowed)
	p2, err := partner.Issue("eu-central", "p2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if answer, err := handshake(a.DataAddr(), &p2); err == nil {
		t.Fatalf("partner certificate for p2 let in (answer %q)", answer)
	}
	waitFor(t, func() bool { return refused(t, a, identity.ReasonClusterNotAllowed) == before+1 })

	// The partner's operators change nothing.
	op, err := partner.IssueID(identity.ID{Role: identity.RoleOperator, Name: "mallory"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	opID, err := identity.NewBundle(op, nil)
	if err != nil {
		t.Fatal(err)
	}
	opID.SetTrust(ptrust)
	pc, err := state.DialControl(a.ControlAddr(), opID)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if _, err := pc.Write(wctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: "partner.example", Value: pemOf(partner)}); err == nil {
		t.Fatal("an operator of the partner domain wrote a trust record")
	}
}

// TestRevokedGatewayLosesItsTunnels: b's certificate serial is revoked
// while a holds a tunnel to it: within seconds a closes that tunnel, a
// new handshake with b is refused as revoked, and traffic to b stops.
func TestRevokedGatewayLosesItsTunnels(t *testing.T) {
	l := trustLab(t, false, "")
	a := l.Gateway("a")
	url := "http://" + a.ImportAddrs()["demo/ledger:8080"] + "/"
	client := &http.Client{Timeout: 5 * time.Second}
	if r := getJSON(t, client, url); r.Cluster != "b" {
		t.Fatalf("served by %q, want b", r.Cluster)
	}
	tunnels := func() float64 {
		return metricValue(t, a, "strait_gateway_tunnels", map[string]string{"direction": "outbound"})
	}
	waitFor(t, func() bool { return tunnels() >= 1 })
	before := refused(t, a, identity.ReasonRevoked)

	leaf, err := x509.ParseCertificate(l.Identity("b").Certificate().Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	revoke(t, opsControl(t, l, "a"), state.Revocation{Serial: identity.SerialHex(leaf), Reason: "key leaked"})
	waitFor(t, func() bool {
		return tunnels() == 0 && metricValue(t, a, "strait_gateway_tunnels_closed_total", map[string]string{"reason": "revoked"}) >= 1
	})
	t.Logf("tunnels to the revoked gateway closed %s after the revocation was written", time.Since(start).Round(time.Millisecond))

	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Get(url)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("a request reached the revoked gateway")
		}
	}
	waitFor(t, func() bool { return refused(t, a, identity.ReasonRevoked) > before })
}

func jsonOf(r state.Revocation) (string, error) {
	b, err := json.Marshal(r)
	return string(b), err
}
