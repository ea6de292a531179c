package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/pebbletest"
)

// peerServer accepts mTLS connections with b's server config until the
// test ends and reports each handshake's peer identity (as b reads it) or
// error.
type peerServer struct {
	addr string
	seen chan handshake
}

type handshake struct {
	id  ID
	err error
}

func serveBundle(t *testing.T, b *Bundle) *peerServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := &peerServer{addr: ln.Addr().String(), seen: make(chan handshake, 1024)}
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
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				h := handshake{err: tc.Handshake()}
				if h.err == nil {
					h.id, h.err = b.PeerID(tc.ConnectionState())
					_, _ = tc.Write([]byte("x"))
				}
				select {
				case s.seen <- h:
				default:
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

// dial completes an mTLS handshake from b to s and returns the server's
// certificate.
func dial(b *Bundle, s *peerServer) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr, b.ClientConfig("gateway"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// The server writes once it has verified us: a refusal of our
	// certificate shows here, after the client's side of the handshake.
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestACMEPebble obtains gateway certificates from a Pebble directory
// started here, by real HTTP-01 and TLS-ALPN-01 validation on loopback,
// through StartManager(Source: SourceACME); two gateways complete mTLS on
// their DNS identities for the trust domain that declares the suffix; a
// gateway whose trust declares none refuses them (dns_name_not_declared);
// and the renewals at two thirds of the certificates' 12 s lifetime
// replace both certificates while handshakes run, none failing.
func TestACMEPebble(t *testing.T) {
	const (
		suffix   = "gw.strait.test"
		td       = "acme.strait.test"
		lifetime = 12 * time.Second
	)
	pb := pebbletest.Start(t, suffix, lifetime)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()

	trust, err := NewTrust([]Domain{{Name: td, Roots: pb.Roots, DNSSuffix: suffix, ServerAuthAsClient: true}}, Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	var logs pebbletest.LogBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("strait log:\n%s", logs.String())
		}
	})
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	start := func(id ID, challenge string) (*Bundle, *Manager) {
		t.Helper()
		iss, err := NewACMEIssuer(ACMEConfig{
			Directory:    pb.Directory,
			Email:        "ops@strait.test",
			AgreeToTerms: true,
			Roots:        pb.DirectoryRoots,
			Challenges:   []string{challenge},
			ListenHost:   "127.0.0.1",
			HTTPPort:     pb.HTTPPort,
			TLSALPNPort:  pb.TLSALPNPort,
			Logger:       logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		b := NewBundleFor(id, trust)
		m, err := StartManager(ctx, ManagerConfig{Bundle: b, Source: SourceACME, Issuer: iss, Storage: t.TempDir(),
			RenewCheck: 250 * time.Millisecond, Logger: logger.With("cluster", id.Cluster)})
		if err != nil {
			t.Fatalf("%s by %s: %v", id, challenge, err)
		}
		t.Cleanup(m.Close)
		return b, m
	}
	serverID := ID{TrustDomain: td, Role: RoleGateway, Region: "eu-west", Cluster: "a"}
	clientID := ID{TrustDomain: td, Role: RoleVoter, Region: "us-east", Cluster: "b"}
	server, serverMgr := start(serverID, ChallengeHTTP01)
	client, clientMgr := start(clientID, ChallengeTLSALPN01)

	leaf := server.Certificate().Leaf
	if len(leaf.URIs) != 0 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "a.eu-west.gw.strait.test" {
		t.Fatalf("server certificate names %v %v, want the DNS name alone", leaf.DNSNames, leaf.URIs)
	}
	if got := client.Certificate().Leaf.DNSNames; len(got) != 1 || got[0] != "b.us-east.voters.gw.strait.test" {
		t.Fatalf("client certificate names %v", got)
	}
	if usages := leaf.ExtKeyUsage; len(usages) != 1 || usages[0] != x509.ExtKeyUsageServerAuth {
		t.Logf("Pebble's certificate usages changed: %v", usages)
	}

	// The validation was real: Pebble fetched the HTTP-01 answer from the
	// server's solver, and the client's solver served the TLS-ALPN-01
	// certificate.
	if want := "Attempting to validate w/ HTTP: http://a.eu-west.gw.strait.test:"; !strings.Contains(pb.Logs(), want) {
		t.Errorf("Pebble's log has no %q", want)
	}
	if want := "served key authentication certificate"; !strings.Contains(logs.String(), want) {
		t.Errorf("the log has no %q (TLS-ALPN-01)", want)
	}

	// mTLS on DNS identities, each side reading the other's.
	srv := serveBundle(t, server)
	if _, err := dial(client, srv); err != nil {
		t.Fatalf("mTLS between ACME gateways: %v", err)
	}
	if h := <-srv.seen; h.err != nil || h.id != clientID {
		t.Fatalf("server saw %+v, %v; want %v", h.id, h.err, clientID)
	}

	// A gateway whose trust has the same roots but declares no suffix
	// refuses the DNS identity, and says why.
	own, err := NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	plainCert, err := own.Issue("eu-central", "c", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewBundle(plainCert, nil)
	if err != nil {
		t.Fatal(err)
	}
	plainTrust, err := NewTrust([]Domain{{Name: "strait.local", Roots: own.Roots()}, {Name: td, Roots: pb.Roots}}, Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	plain.SetTrust(plainTrust)
	refused := make(chan *RefusedError, 1)
	plain.OnRefused(func(r *RefusedError) { refused <- r })
	if _, err := dial(plain, srv); err == nil {
		t.Fatal("a trust without the DNS suffix accepted the ACME gateway")
	}
	select {
	case r := <-refused:
		if r.Reason != ReasonDNSNotDeclared || !strings.Contains(r.Error(), "a.eu-west.gw.strait.test") {
			t.Fatalf("refusal %v (%s), want %s naming the DNS name", r, r.Reason, ReasonDNSNotDeclared)
		}
		t.Logf("refused as expected: %v", r)
	default:
		t.Fatal("no refusal reported")
	}
	<-srv.seen // the server's side of the refused handshake

	// Without ServerAuthAsClient the server refuses Pebble's server-only
	// certificate as a client certificate.
	strict, _ := NewTrust([]Domain{{Name: td, Roots: pb.Roots, DNSSuffix: suffix}}, Revocations{})
	server.SetTrust(strict)
	if _, err := dial(client, srv); err == nil {
		t.Fatal("a server-only certificate was taken as a client's without ServerAuthAsClient")
	}
	if h := <-srv.seen; !isRefused(h.err, ReasonWrongKeyUsage) {
		t.Fatalf("server: %v, want refused (%s)", h.err, ReasonWrongKeyUsage)
	}
	server.SetTrust(trust)

	// Renewal: handshakes run until both managers have renewed, which
	// certmagic does at two thirds of the lifetime (8 s); none may fail.
	firstServer, firstClient := SerialHex(leaf), SerialHex(client.Certificate().Leaf)
	renewed := func() bool {
		return serverMgr.Status().Renewals > 0 && clientMgr.Status().Renewals > 0
	}
	var handshakes, failures atomic.Int64
	var lastErr atomic.Value
	deadline := time.Now().Add(lifetime + 4*time.Second)
	for !renewed() {
		if time.Now().After(deadline) {
			t.Fatalf("no renewal within %s: server %+v, client %+v", lifetime+4*time.Second, serverMgr.Status(), clientMgr.Status())
		}
		if _, err := dial(client, srv); err != nil {
			failures.Add(1)
			lastErr.Store(err)
		}
		handshakes.Add(1)
		if h := <-srv.seen; h.err != nil {
			failures.Add(1)
			lastErr.Store(h.err)
		}
	}
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d handshakes failed during renewal; last: %v", n, handshakes.Load(), lastErr.Load())
	}
	peer, err := dial(client, srv)
	if err != nil {
		t.Fatalf("after renewal: %v", err)
	}
	if h := <-srv.seen; h.err != nil || h.id != clientID {
		t.Fatalf("after renewal the server saw %+v, %v", h.id, h.err)
	}
	if SerialHex(peer) == firstServer || SerialHex(server.Certificate().Leaf) != SerialHex(peer) {
		t.Fatalf("after renewal the client met certificate %s; first %s, current %s", SerialHex(peer), firstServer, SerialHex(server.Certificate().Leaf))
	}
	if SerialHex(client.Certificate().Leaf) == firstClient {
		t.Fatal("the client's certificate was not replaced")
	}
	st := serverMgr.Status()
	if st.Failures != 0 || st.NextRenewal.IsZero() {
		t.Errorf("server status %+v", st)
	}
	t.Logf("%d handshakes during renewal, none failed; server %s -> %s", handshakes.Load(), firstServer, SerialHex(peer))
}

func isRefused(err error, reason Reason) bool {
	var r *RefusedError
	return errors.As(err, &r) && r.Reason == reason
}

// TestACMEConfigValidate: every problem at once, each naming its field.
func TestACMEConfigValidate(t *testing.T) {
	err := ACMEConfig{Directory: "http://ca.example/dir", EAB: &EAB{KeyID: "k"}, Challenges: []string{"dns-01"},
		ListenHost: "localhost", HTTPPort: 70000}.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, want := range []string{"acme.directory", "acme.agreeToTerms", "acme.eab", "acme.challenges: \"dns-01\"", "acme.listenHost", "acme.httpPort"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v\nsays nothing of %s", err, want)
		}
	}
	if err := (ACMEConfig{Directory: "https://ca.example/dir", AgreeToTerms: true}).Validate(); err != nil {
		t.Errorf("Validate of a minimal config: %v", err)
	}
	iss, err := NewACMEIssuer(ACMEConfig{Directory: "https://ca.example/dir", AgreeToTerms: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue(context.Background(), &x509.CertificateRequest{}); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Errorf("Issue without a manager: %v", err)
	}
	if k := iss.IssuerKey(); k != "ca.example-dir" {
		t.Errorf("IssuerKey = %q", k)
	}
}
