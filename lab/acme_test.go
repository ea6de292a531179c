package lab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/pebbletest"
	"github.com/straitmesh/strait/lab"
)

// TestACMEGatewaysRenewWithoutFailedConnections: gateways a and b take
// tls.source acme from a Pebble directory (a by HTTP-01, b by
// TLS-ALPN-01, validated for real on loopback), identified by
// <cluster>.<region>.gw.strait.test; the certificates live 9 s, so each
// gateway renews during the test while a steady stream of new
// connections runs through a's import port to b, every stream its own
// mTLS handshake (no tunnels), none failing. Gateway c trusts Pebble's
// roots in the same trust domain but declares no DNS suffix: it refuses
// b's certificate (dns_name_not_declared) and its import fails.
func TestACMEGatewaysRenewWithoutFailedConnections(t *testing.T) {
	const (
		td       = "acme.strait.test"
		suffix   = "gw.strait.test"
		lifetime = 9 * time.Second
	)
	// Pebble validates any name under strait.test: the gateways' and an
	// outsider's under other.strait.test.
	pb := pebbletest.Start(t, "strait.test", lifetime)
	dir := t.TempDir()
	dirRoots, pebbleRoots := filepath.Join(dir, "directory-roots.pem"), filepath.Join(dir, "pebble-roots.pem")
	writeFile(t, dirRoots, pb.DirectoryRootsPEM())
	writeFile(t, pebbleRoots, pb.RootsPEM())

	own, err := identity.NewCA(td, time.Hour) // the probes' certificates
	if err != nil {
		t.Fatal(err)
	}
	challenge := map[string]string{"a": identity.ChallengeHTTP01, "b": identity.ChallengeTLSALPN01}
	l := startLineLab(t, lab.Spec{TrustDomain: td, ConfigIdentity: true, NoTunnels: true,
		Tune: func(cluster string, cfg *gateway.Config) {
			cfg.TLS.Source = identity.SourceACME
			cfg.TLS.CA = pebbleRoots
			cfg.TLS.Storage = filepath.Join(dir, "certificates", cluster)
			cfg.TLS.RenewCheck = 250 * time.Millisecond
			cfg.TLS.ACME = gateway.ACMEConfig{Directory: pb.Directory, Email: "ops@strait.test", AgreeToTerms: true, Roots: dirRoots,
				Challenges: []string{challenge[cluster]}, ListenHost: "127.0.0.1", HTTPPort: pb.HTTPPort, TLSALPNPort: pb.TLSALPNPort,
				DNSSuffix: suffix, ServerAuthAsClient: true}
		}},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a, b := l.Gateway("a"), l.Gateway("b")
	imp := a.ImportAddrs()["demo/lines:7000"]

	first := map[string]string{}
	for name, g := range map[string]*gateway.Gateway{"a": a, "b": b} {
		st := g.Status().Certificate
		if st == nil || st.Source != identity.SourceACME || st.Renewals != 0 {
			t.Fatalf("%s: certificate status %+v, want source acme, not yet renewed", name, st)
		}
		first[name] = st.Serial
	}
	// b's data port presents Pebble's certificate for b's DNS name alone.
	probe := acmeProbe(t, own, pb.Roots, suffix)
	served, err := probe.served(b.DataAddr())
	if err != nil {
		t.Fatalf("probe of b's data port: %v", err)
	}
	if len(served.URIs) != 0 || len(served.DNSNames) != 1 || served.DNSNames[0] != "b.r2."+suffix || identity.SerialHex(served) != first["b"] {
		t.Fatalf("b serves %s for %v %v, want %s for b.r2.%s alone", identity.SerialHex(served), served.DNSNames, served.URIs, first["b"], suffix)
	}
	if got := askOnce(t, imp, 5); got != "b" {
		t.Fatalf("a's import answered by %q", got)
	}

	long := dialLine(t, imp)
	if _, err := long.ask(3); err != nil {
		t.Fatal(err)
	}
	stream := startConnStream(imp, 50000)

	renewed := func() bool {
		return a.Status().Certificate.Renewals >= 1 && b.Status().Certificate.Renewals >= 1
	}
	deadline := time.Now().Add(lifetime + 5*time.Second)
	for !renewed() {
		if time.Now().After(deadline) {
			stream.Stop()
			t.Fatalf("no renewal within %s: a %+v, b %+v", lifetime+5*time.Second, a.Status().Certificate, b.Status().Certificate)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// b's data port presents the renewed certificate to new handshakes.
	var now string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if served, err := probe.served(b.DataAddr()); err == nil {
			if now = identity.SerialHex(served); now == b.Status().Certificate.Serial && now != first["b"] {
				break
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // connections made after the renewals
	made, failed, firstErr := stream.Stop()
	if _, err := long.ask(5); err != nil {
		t.Fatalf("the long-lived connection broke across the renewals: %v", err)
	}

	if failed > 0 {
		t.Fatalf("%d of %d new connections failed across the renewals; first: %v", failed, made, firstErr)
	}
	if made < 50 {
		t.Fatalf("only %d connections made across the renewals", made)
	}
	if now == first["b"] || now != b.Status().Certificate.Serial {
		t.Fatalf("b's data port serves %s; first %s, status %s", now, first["b"], b.Status().Certificate.Serial)
	}
	for name, g := range map[string]*gateway.Gateway{"a": a, "b": b} {
		st := g.Status().Certificate
		if st.Source != identity.SourceACME || st.Renewals < 1 || st.Failures != 0 || st.Serial == first[name] || st.NextRenewal.IsZero() {
			t.Fatalf("%s: certificate status after renewal %+v (first serial %s)", name, st, first[name])
		}
		if n := metricValue(t, g, "strait_identity_renewals_total", map[string]string{"source": "acme", "result": "ok"}); n < 1 {
			t.Fatalf("%s: strait_identity_renewals_total{acme,ok} = %v", name, n)
		}
	}
	t.Logf("%d new connections, none failed, across renewals of a (%s -> %s) and b (%s -> %s)", made,
		first["a"], a.Status().Certificate.Serial, first["b"], now)

	// A peer with a Pebble certificate for a name under a suffix b's
	// trust does not declare is refused at b's data port, and counted.
	outsider := acmeOutsider(t, pb, td, suffix, "other.strait.test")
	if err := outsider.refusedBy(b.DataAddr()); err == nil {
		t.Fatal("b accepted a Pebble certificate under a suffix its trust does not declare")
	} else {
		t.Logf("the outsider: %v", err)
	}
	if n := metricValue(t, b, "strait_identity_peer_refused_total", map[string]string{"reason": string(identity.ReasonDNSNotDeclared)}); n != 1 {
		t.Fatalf("b: strait_identity_peer_refused_total{%s} = %v, want the outsider's refusal", identity.ReasonDNSNotDeclared, n)
	}
	// A peer that trusts Pebble's roots but declares no suffix refuses b.
	plain := acmeProbe(t, own, pb.Roots, "")
	refused := make(chan *identity.RefusedError, 1)
	plain.b.OnRefused(func(r *identity.RefusedError) { refused <- r })
	if _, err := plain.served(b.DataAddr()); err == nil {
		t.Fatal("a trust without the DNS suffix accepted b")
	}
	select {
	case r := <-refused:
		if r.Reason != identity.ReasonDNSNotDeclared {
			t.Fatalf("refusal of b: %v (%s), want %s", r, r.Reason, identity.ReasonDNSNotDeclared)
		}
	default:
		t.Fatal("no refusal of b reported")
	}
}

// acmeProber completes mTLS handshakes with gateways named by DNS, as a
// peer holding b.
type acmeProber struct{ b *identity.Bundle }

// acmeProbe holds a certificate of ca and trusts roots for ca's trust
// domain, declaring suffix ("": none).
func acmeProbe(t *testing.T, ca *identity.CA, roots []*x509.Certificate, suffix string) acmeProber {
	t.Helper()
	cert, err := ca.IssueID(identity.ID{Role: identity.RoleGateway, Region: "probe", Cluster: "probe"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := identity.NewBundle(cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := identity.NewTrust([]identity.Domain{{Name: ca.TrustDomain, Roots: roots, DNSSuffix: suffix, ServerAuthAsClient: suffix != ""}}, identity.Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	b.SetTrust(trust)
	return acmeProber{b: b}
}

// acmeOutsider obtains from Pebble a certificate for p.r9.<otherSuffix>
// (trust domain otherSuffix) and trusts the gateways of trust domain td
// under suffix.
func acmeOutsider(t *testing.T, pb *pebbletest.Server, td, suffix, otherSuffix string) acmeProber {
	t.Helper()
	trust, err := identity.NewTrust([]identity.Domain{
		{Name: otherSuffix, Roots: pb.Roots, DNSSuffix: otherSuffix, ServerAuthAsClient: true},
		{Name: td, Roots: pb.Roots, DNSSuffix: suffix, ServerAuthAsClient: true},
	}, identity.Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := identity.NewACMEIssuer(identity.ACMEConfig{Directory: pb.Directory, AgreeToTerms: true, Roots: pb.DirectoryRoots,
		Challenges: []string{identity.ChallengeHTTP01}, ListenHost: "127.0.0.1", HTTPPort: pb.HTTPPort, TLSALPNPort: pb.TLSALPNPort,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	b := identity.NewBundleFor(identity.ID{TrustDomain: otherSuffix, Role: identity.RoleGateway, Region: "r9", Cluster: "p"}, trust)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := identity.StartManager(ctx, identity.ManagerConfig{Bundle: b, Source: identity.SourceACME, Issuer: iss, Storage: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("outsider's certificate: %v", err)
	}
	t.Cleanup(m.Close)
	if got := b.Certificate().Leaf.DNSNames; len(got) != 1 || got[0] != "p.r9."+otherSuffix {
		t.Fatalf("outsider's certificate names %v", got)
	}
	return acmeProber{b: b}
}

// served is the certificate the gateway at addr presents to a new
// handshake, verified by the prober's trust.
func (p acmeProber) served(addr string) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, p.b.ClientConfig("probe.strait"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// refusedBy completes a handshake with the gateway at addr and reports
// how the gateway refused the prober's certificate: in TLS 1.3 the
// server checks it after the client has finished, so the refusal arrives
// as an alert on the first read. nil: not refused within 2 s.
func (p acmeProber) refusedBy(addr string) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, p.b.ClientConfig("probe.strait"))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil
	}
	return err
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
