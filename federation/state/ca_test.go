package state

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/straitmesh/strait/federation/state/statev1"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/fakeclock"
)

// caFed is a federation whose voters hold an intermediate of its root.
type caFed struct {
	*testFed
	inter *identity.Intermediate
	clock *fakeclock.Clock // every node's clock, when set
}

func newCAFed(t *testing.T, voters int, clock *fakeclock.Clock) *caFed {
	t.Helper()
	f := &caFed{testFed: newTestFed(t), clock: clock}
	chain, key, err := f.ca.IssueIntermediate(30 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if f.inter, err = identity.ParseIntermediate(chain, key); err != nil {
		t.Fatal(err)
	}
	f.opts = func(_ *stateNode, o *Options) {
		o.CA = f.inter
		if clock != nil {
			o.Now = clock.Now
		}
	}
	for range voters {
		f.add(true, voters)
	}
	f.waitMembers()
	return f
}

// token writes a join token record as an operator and returns the token.
func (f *caFed) token(t *testing.T, cluster, region string, role identity.Role, ttl time.Duration) identity.Token {
	t.Helper()
	tok, err := identity.NewToken(f.ca.Roots()[0])
	if err != nil {
		t.Fatal(err)
	}
	v := fmt.Sprintf(`{"cluster":%q,"region":%q,"role":%q,"secretHash":%q,"ttlSeconds":%d}`, cluster, region, role, tok.SecretHash(), int64(ttl/time.Second))
	if _, err := f.client(f.leader()).Write(ctx10(t), &WriteRequest{Op: OpPut, Kind: KindJoinToken, Key: tok.ID, Value: v}); err != nil {
		t.Fatalf("write join token: %v", err)
	}
	return tok
}

// enrol asks the control API at n for a certificate for id with tok and
// no client certificate, again while no leader is known (an election on
// a loaded machine), as certmagic would.
func (f *caFed) enrol(t *testing.T, n *stateNode, tok identity.Token, csr []byte) (*SignResponse, error) {
	t.Helper()
	c, err := dialControlTLS(n.ctlAddr, tok.EnrolmentClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctx10(t)
	for {
		resp, err := c.SignCertificate(ctx, &SignRequest{CSR: csr, Token: tok.String()})
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return resp, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newCSR makes a key and a CSR for id; edit may change the template.
func newCSR(t *testing.T, id identity.ID, edit func(*x509.CertificateRequest)) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id.TrustDomain = "strait.local"
	tmpl := &x509.CertificateRequest{URIs: []*url.URL{id.URI()}}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// bundleOf makes a bundle of a signed chain and its key, trusting roots.
func bundleOf(t *testing.T, resp *SignResponse, key *ecdsa.PrivateKey) *identity.Bundle {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(resp.Chain), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatalf("signed chain: %v", err)
	}
	roots, err := identity.ParsePEMCertificates([]byte(resp.Roots))
	if err != nil {
		t.Fatal(err)
	}
	b, err := identity.NewBundle(cert, roots)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *caFed) wantDenied(t *testing.T, what string, err error, rule string) {
	t.Helper()
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "rule "+rule) {
		t.Fatalf("%s: %v; want PermissionDenied by rule %s", what, err, rule)
	}
	d := f.denialsCopy()
	if len(d) == 0 || d[len(d)-1].Rule != rule || d[len(d)-1].RPC != "SignCertificate" {
		t.Fatalf("%s: last denial %+v; want one by rule %s for SignCertificate", what, d, rule)
	}
}

func signedTotal(n *stateNode, how string) float64 {
	return testutil.ToFloat64(n.store.metrics.signed.WithLabelValues(how))
}

// TestCAEnrolWithToken: a new gateway with a join token and no
// certificate obtains one through a follower (sent on to the leader);
// the certificate works on the control API, renews itself, and the
// token cannot be used again by another key.
func TestCAEnrolWithToken(t *testing.T) {
	f := newCAFed(t, 3, nil)
	leader := f.leader()
	var follower *stateNode
	for _, n := range f.nodes {
		if n != leader {
			follower = n
		}
	}
	id := identity.ID{TrustDomain: "strait.local", Role: identity.RoleGateway, Region: "eu-west", Cluster: "eu-west-1"}
	tok := f.token(t, "eu-west-1", "eu-west", identity.RoleGateway, time.Hour)
	csr, key := newCSR(t, id, nil)
	resp, err := f.enrol(t, follower, tok, csr)
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	b := bundleOf(t, resp, key)
	leaf := b.Certificate().Leaf
	if b.ID != id || leaf.Subject.CommonName != "" || len(leaf.DNSNames) != 0 || resp.Index == 0 {
		t.Fatalf("certificate for %s (CN %q, DNS %v) at index %d; want %s, no CN, no DNS names, the index that used the token",
			b.ID, leaf.Subject.CommonName, leaf.DNSNames, resp.Index, id)
	}
	// The default lifetime (24h) is cut at the intermediate's end.
	if !leaf.NotAfter.Equal(f.inter.Certificate().NotAfter) || time.Since(leaf.NotBefore) < time.Minute {
		t.Errorf("valid %s to %s; want from a minute ago to the intermediate's end %s", leaf.NotBefore, leaf.NotAfter, f.inter.Certificate().NotAfter)
	}
	// The certificate works: it reads the routing state.
	c, err := DialControl(follower.ctlAddr, b)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Read(ctx10(t), &ReadRequest{Kind: KindJoinToken, Key: tok.ID, Consistent: true})
	if err != nil {
		t.Fatalf("read with the new certificate: %v", err)
	}
	if len(r.Records) != 1 || !strings.Contains(r.Records[0].Value, `"usedBy":"`+id.String()+`"`) || strings.Contains(r.Records[0].Value, tok.Secret) {
		t.Fatalf("token record %+v: want it used by %s, without the secret", r.Records, id)
	}
	// It renews its own identity, with a new key, without a token.
	csr2, key2 := newCSR(t, id, nil)
	renewed, err := c.SignCertificate(ctx10(t), &SignRequest{CSR: csr2, Lifetime: 10 * time.Minute})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	rb := bundleOf(t, renewed, key2)
	if left := time.Until(rb.Certificate().Leaf.NotAfter); rb.ID != id || renewed.Index != 0 || left > 10*time.Minute || left < 9*time.Minute {
		t.Fatalf("renewed %s at index %d, valid for %s more; want %s, no token, the 10 minutes asked for", rb.ID, renewed.Index, left, id)
	}
	// The token is spent: another key cannot use it, at any gateway.
	csr3, _ := newCSR(t, id, nil)
	_, err = f.enrol(t, leader, tok, csr3)
	f.wantDenied(t, "a second use of the token", err, "token-used")
	// The same request again (its answer lost) gets its certificate again.
	if _, err := f.enrol(t, leader, tok, csr); err != nil {
		t.Fatalf("the first request asked again: %v", err)
	}
	if got := signedTotal(leader, "token") + signedTotal(leader, "renewal"); got != 3 {
		t.Errorf("strait_state_certificates_signed_total on the leader = %v, want 3", got)
	}
}

// TestCATokenSingleUseUnderRace: eight new gateways race with one token,
// each with its own key: exactly one obtains a certificate.
func TestCATokenSingleUseUnderRace(t *testing.T) {
	f := newCAFed(t, 3, nil)
	tok := f.token(t, "c1", "r1", identity.RoleGateway, time.Hour)
	id := identity.ID{Role: identity.RoleGateway, Region: "r1", Cluster: "c1"}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		csr, _ := newCSR(t, id, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.enrol(t, f.nodes[i%len(f.nodes)], tok, csr)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "rule token-used"):
			t.Errorf("a losing request: %v; want token-used", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d requests obtained a certificate with one token, want exactly 1", won)
	}
}

// TestCATokenExpiresByLeaderTime: a token is good until its TTL after
// the leader's time of its record, judged by the leader's clock.
func TestCATokenExpiresByLeaderTime(t *testing.T) {
	clock := fakeclock.New(time.Now())
	f := newCAFed(t, 1, clock)
	n := f.nodes[0]
	id := identity.ID{Role: identity.RoleVoter, Region: "r1", Cluster: "c1"}
	early := f.token(t, "c1", "r1", identity.RoleVoter, time.Minute)
	late := f.token(t, "c1", "r1", identity.RoleVoter, time.Minute)
	clock.Add(59 * time.Second)
	csr, _ := newCSR(t, id, nil)
	if _, err := f.enrol(t, n, early, csr); err != nil {
		t.Fatalf("a token used within its TTL: %v", err)
	}
	clock.Add(2 * time.Second)
	csr, _ = newCSR(t, id, nil)
	_, err := f.enrol(t, n, late, csr)
	f.wantDenied(t, "a token used after its TTL", err, "token-expired")
}

// TestCATokenBoundToClusterRegionRole: a token obtains only the identity
// it was made for; every other request is refused, audited, and leaves
// the token usable.
func TestCATokenBoundToClusterRegionRole(t *testing.T) {
	f := newCAFed(t, 1, nil)
	n := f.nodes[0]
	tok := f.token(t, "c1", "r1", identity.RoleGateway, time.Hour)
	before := n.store.raft.LastIndex()
	for _, tc := range []struct {
		name string
		id   identity.ID
	}{
		{"another cluster", identity.ID{Role: identity.RoleGateway, Region: "r1", Cluster: "c2"}},
		{"another region", identity.ID{Role: identity.RoleGateway, Region: "r2", Cluster: "c1"}},
		{"a voter", identity.ID{Role: identity.RoleVoter, Region: "r1", Cluster: "c1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, _ := newCSR(t, tc.id, nil)
			_, err := f.enrol(t, n, tok, csr)
			f.wantDenied(t, tc.name, err, "token-binding")
		})
	}
	bad := tok
	bad.Secret = strings.Repeat("0", 64)
	csr, _ := newCSR(t, identity.ID{Role: identity.RoleGateway, Region: "r1", Cluster: "c1"}, nil)
	_, err := f.enrol(t, n, bad, csr)
	f.wantDenied(t, "a wrong secret", err, "token-secret")
	unknown, _ := identity.NewToken(f.ca.Roots()[0])
	_, err = f.enrol(t, n, unknown, csr)
	f.wantDenied(t, "an unknown token", err, "token-unknown")
	if after := n.store.raft.LastIndex(); after != before {
		t.Errorf("refused tokens grew the log from %d to %d", before, after)
	}
	if _, err := f.enrol(t, n, tok, csr); err != nil {
		t.Fatalf("the token after refusals: %v", err)
	}
}

// TestCASignRefusesOtherIdentities: a CSR naming anything but exactly
// one SPIFFE ID of a gateway or voter is refused; a caller with a
// certificate renews its own identity only; every refusal is audited and
// counted.
func TestCASignRefusesOtherIdentities(t *testing.T) {
	f := newCAFed(t, 1, nil)
	n := f.nodes[0]
	gw := identity.ID{Role: identity.RoleGateway, Region: "r1", Cluster: "c1"}
	as := func(id identity.ID) *ControlClient {
		c, err := DialControl(n.ctlAddr, f.bundle(id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	tok := f.token(t, "c1", "r1", identity.RoleGateway, time.Hour)
	sign := func(c *ControlClient, csr []byte, token string) error {
		_, err := c.SignCertificate(ctx10(t), &SignRequest{CSR: csr, Token: token})
		return err
	}
	other, _ := newCSR(t, identity.ID{Role: identity.RoleGateway, Region: "r1", Cluster: "c2"}, nil)
	voterSelf, _ := newCSR(t, identity.ID{Role: identity.RoleVoter, Region: "r1", Cluster: "c1"}, nil)
	own, _ := newCSR(t, gw, nil)
	withDNS, _ := newCSR(t, gw, func(r *x509.CertificateRequest) { r.DNSNames = []string{"evil.example"} })
	twoURIs, _ := newCSR(t, gw, func(r *x509.CertificateRequest) {
		r.URIs = append(r.URIs, &url.URL{Scheme: "spiffe", Host: "strait.local", Path: "/gateway/region/r1/cluster/c2"})
	})
	withIP, _ := newCSR(t, gw, func(r *x509.CertificateRequest) { r.IPAddresses = append(r.IPAddresses, []byte{127, 0, 0, 1}) })
	withCN, _ := newCSR(t, gw, func(r *x509.CertificateRequest) { r.Subject.CommonName = "c1.r1" })
	op, _ := newCSR(t, identity.ID{Role: identity.RoleOperator, Name: "mallory"}, nil)
	foreign, _ := newCSR(t, gw, func(r *x509.CertificateRequest) {
		r.URIs = []*url.URL{{Scheme: "spiffe", Host: "evil.example", Path: "/gateway/region/r1/cluster/c1"}}
	})
	for _, tc := range []struct {
		name string
		call func() error
		rule string
	}{
		{"a gateway renews another cluster's identity", func() error { return sign(as(gw), other, "") }, "sign-own-identity"},
		{"a gateway renews itself as a voter", func() error { return sign(as(gw), voterSelf, "") }, "sign-own-identity"},
		{"an operator asks for a gateway's certificate", func() error { return sign(as(identity.ID{Role: identity.RoleOperator, Name: "ops"}), own, "") }, "sign-own-identity"},
		{"a gateway with a certificate presents a token", func() error { return sign(as(gw), own, tok.String()) }, "sign-own-identity"},
		{"a CSR with a DNS name", func() error { return sign(as(gw), withDNS, "") }, "csr-names"},
		{"a CSR with two SPIFFE IDs", func() error { return sign(as(gw), twoURIs, "") }, "csr-names"},
		{"a CSR with an IP address", func() error { _, err := f.enrol(t, n, tok, withIP); return err }, "csr-names"},
		{"a CSR for an operator with a token", func() error { _, err := f.enrol(t, n, tok, op); return err }, "csr-names"},
		{"a CSR of another trust domain", func() error { _, err := f.enrol(t, n, tok, foreign); return err }, "csr-names"},
		{"no certificate and no token", func() error {
			c, err := dialControlTLS(n.ctlAddr, tok.EnrolmentClientConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.SignCertificate(ctx10(t), &SignRequest{CSR: own})
			return err
		}, "sign-token"},
		{"a malformed token", func() error {
			c, err := dialControlTLS(n.ctlAddr, tok.EnrolmentClientConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.SignCertificate(ctx10(t), &SignRequest{CSR: own, Token: "sjt1.nope"})
			return err
		}, "token-malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.denialsCopy())
			f.wantDenied(t, tc.name, tc.call(), tc.rule)
			if got := len(f.denialsCopy()); got != before+1 {
				t.Errorf("%d denials recorded, want 1", got-before)
			}
		})
	}
	denied := testutil.ToFloat64(n.store.metrics.denied.WithLabelValues("SignCertificate", "csr-names"))
	if denied != 5 {
		t.Errorf("strait_state_denied_total{rpc=SignCertificate,rule=csr-names} = %v, want 5", denied)
	}
	// A certificate that names a common name is still signed without one.
	if _, err := f.enrol(t, n, tok, withCN); err != nil {
		t.Fatalf("the token, after every refusal: %v", err)
	}
	if got := signedTotal(n, "token"); got != 1 {
		t.Errorf("signed %v certificates, want 1", got)
	}
}

// TestCANoIntermediate: a leader without an intermediate answers
// Unimplemented, and the token stays unused.
func TestCANoIntermediate(t *testing.T) {
	f := newTestFed(t)
	n := f.add(true, 1)
	f.waitMembers()
	cf := &caFed{testFed: f}
	tok := cf.token(t, "c1", "r1", identity.RoleGateway, time.Hour)
	csr, _ := newCSR(t, identity.ID{Role: identity.RoleGateway, Region: "r1", Cluster: "c1"}, nil)
	if _, err := cf.enrol(t, n, tok, csr); !errors.Is(err, ErrNoCA) {
		t.Fatalf("enrol at a voter without an intermediate: %v; want ErrNoCA", err)
	}
	if r, _ := n.store.View().Get(KindJoinToken, tok.ID); strings.Contains(r.Value, "usedBy") {
		t.Fatalf("the token was used: %s", r.Value)
	}
}

// TestControlNeedsACertificate: the control port takes clients without
// a certificate (for SignCertificate), and answers every other method of
// every service it serves Unauthenticated. The methods are taken from the
// service descriptions, so a method added later is covered.
func TestControlNeedsACertificate(t *testing.T) {
	f := newCAFed(t, 1, nil)
	n := f.nodes[0]
	conf := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	cc, err := grpc.NewClient("passthrough:///"+n.ctlAddr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := ctx10(t)
	checked := 0
	for _, m := range statev1.Control_ServiceDesc.Methods {
		full := "/" + statev1.Control_ServiceDesc.ServiceName + "/" + m.MethodName
		err := cc.Invoke(ctx, full, &emptypb.Empty{}, &emptypb.Empty{})
		if m.MethodName == "SignCertificate" {
			// Past the certificate check: the empty request is invalid.
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s without a certificate: %v; want InvalidArgument for the empty request", full, err)
			}
			continue
		}
		checked++
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s without a certificate: %v; want Unauthenticated", full, err)
		}
	}
	if checked < 9 {
		t.Fatalf("checked %d methods", checked)
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("health check without a certificate: %v; want Unauthenticated", err)
	}
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("health watch without a certificate: %v; want Unauthenticated", err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err == nil {
		// A refused stream's Send says EOF; its status comes with Recv.
		_ = rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = rs.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without a certificate: %v; want Unauthenticated", err)
	}
	// Through the Go client the answer is ErrNoCertificate.
	c, err := dialControlTLS(n.ctlAddr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(ctx, &ReadRequest{}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("read without a certificate: %v; want ErrNoCertificate", err)
	}
}

// TestCAIssuerObtainsAndRenewsThroughCertmagic: a gateway with only a
// join token starts identity's certificate manager on the CA issuer: it
// obtains its first certificate, learns the federation's root from it,
// and renews twice (lifetime 6s, renewal at two thirds, which leaves a
// loaded machine two seconds to renew before expiry) while a TLS
// server on its bundle takes a handshake every 20ms without one failing.
func TestCAIssuerObtainsAndRenewsThroughCertmagic(t *testing.T) {
	f := newCAFed(t, 1, nil)
	n := f.nodes[0]
	tok := f.token(t, "c1", "r1", identity.RoleGateway, time.Hour)
	id := identity.ID{TrustDomain: "strait.local", Role: identity.RoleGateway, Region: "r1", Cluster: "c1"}
	b := identity.NewBundleFor(id, nil)
	is, err := NewCAIssuer(CAIssuerConfig{Bundle: b, Servers: []string{"127.0.0.1:1", n.ctlAddr}, Token: tok.String(), Lifetime: 6 * time.Second,
		Timeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctx10(t)
	m, err := identity.StartManager(ctx, identity.ManagerConfig{Bundle: b, Source: identity.SourceCA, Issuer: is, Storage: t.TempDir(),
		RenewCheck: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("start the certificate manager: %v", err)
	}
	defer m.Close()
	if b.Certificate() == nil || b.Trust() == nil {
		t.Fatal("the bundle has no certificate or no trust after start")
	}
	first := identity.SerialHex(b.Certificate().Leaf)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte{1})
			}()
		}
	}()
	client := f.bundle(identity.ID{Role: identity.RoleGateway, Region: "r2", Cluster: "c2"})
	var handshakes, failed int
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for (m.Status().Renewals < 2 || len(seen) < 3) && time.Now().Before(deadline) {
		c, err := tls.Dial("tcp", ln.Addr().String(), client.ClientConfig("c1"))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
			seen[identity.SerialHex(c.ConnectionState().PeerCertificates[0])] = true
			c.Close()
		}
		handshakes++
		if err != nil {
			failed++
			t.Logf("handshake %d: %v", handshakes, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := m.Status()
	t.Logf("%d handshakes, %d failed, %d certificates seen, status %+v", handshakes, failed, len(seen), st)
	if st.Renewals < 2 {
		t.Fatalf("renewed %d times in 20s, want 2 (status %+v)", st.Renewals, st)
	}
	if failed != 0 {
		t.Errorf("%d of %d handshakes failed across renewals, want none", failed, handshakes)
	}
	if len(seen) < 3 || !seen[first] {
		t.Errorf("clients saw %d certificates, want the first and two renewed", len(seen))
	}
	if got := signedTotal(n, "renewal"); got < 2 {
		t.Errorf("the CA signed %v renewals, want 2 or more", got)
	}
}

// TestFSMDecidesTokenUseByEntryTime: the state machine judges a token's
// expiry by the time the leader wrote into the entry that uses it, so
// every replica decides the same whatever its own clock; a use after the
// first, by another request, is refused.
func TestFSMDecidesTokenUseByEntryTime(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := identity.NewToken(ca.Roots()[0])
	if err != nil {
		t.Fatal(err)
	}
	put := &command{Op: OpPut, Kind: KindJoinToken, Key: tok.ID, Time: t0,
		Value: `{"cluster":"c1","region":"r1","role":"voter","secretHash":"` + tok.SecretHash() + `","ttlSeconds":60}`}
	use := func(at time.Time, csr string) *command {
		return &command{Op: OpConsume, Kind: KindJoinToken, Key: tok.ID, Time: at, By: "spiffe://strait.local/voter/region/r1/cluster/c1",
			Value: `{"secretHash":"` + tok.SecretHash() + `","cluster":"c1","region":"r1","role":"voter","csr":"` + Digest(csr) + `"}`}
	}
	for _, tc := range []struct {
		name  string
		steps []*command
		rule  string // of the last step; "" when it applies
	}{
		{"used a second before it expires", []*command{put, use(t0.Add(59*time.Second), "a")}, ""},
		{"used as it expires", []*command{put, use(t0.Add(60*time.Second), "a")}, "token-expired"},
		{"used twice by two requests", []*command{put, use(t0, "a"), use(t0, "b")}, "token-used"},
		{"the same request again", []*command{put, use(t0, "a"), use(t0.Add(time.Hour), "a")}, ""},
		{"never written", []*command{use(t0, "a")}, "token-unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFSM("strait.local", discard())
			var res applyResult
			for i, c := range tc.steps {
				res = applyCmd(t, f, uint64(i+1), c)
				if i < len(tc.steps)-1 && res.Err != nil {
					t.Fatalf("step %d: %v", i+1, res.Err)
				}
			}
			switch {
			case tc.rule == "" && res.Err != nil:
				t.Fatalf("refused: %v", res.Err)
			case tc.rule != "" && (!errors.Is(res.Err, ErrDenied) || !strings.Contains(res.Err.Error(), "rule "+tc.rule)):
				t.Fatalf("%v; want a refusal by rule %s", res.Err, tc.rule)
			}
		})
	}
}

// TestCAConfigValidate: state.ca needs both files, a voter, and a
// lifetime from 1s to 30 days; each problem names its key.
func TestCAConfigValidate(t *testing.T) {
	base := DefaultConfig()
	base.DataDir, base.Bind, base.Voter, base.BootstrapExpect = "/var/lib/strait", "127.0.0.1:8300", true, 1
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"both files on a voter", func(c *Config) { c.CA.Intermediate, c.CA.IntermediateKey = "i.pem", "k.pem" }, ""},
		{"no CA", func(c *Config) {}, ""},
		{"no key", func(c *Config) { c.CA.Intermediate = "i.pem" }, "state.ca.intermediateKey"},
		{"no certificate", func(c *Config) { c.CA.IntermediateKey = "k.pem" }, "state.ca.intermediate"},
		{"not a voter", func(c *Config) {
			c.CA.Intermediate, c.CA.IntermediateKey, c.Voter, c.BootstrapExpect, c.Join = "i.pem", "k.pem", false, 0, []string{"10.0.0.1:15012"}
		}, "only voters sign"},
		{"a lifetime under a second", func(c *Config) { c.CA.Lifetime = time.Millisecond }, "state.ca.lifetime"},
		{"a lifetime over 30 days", func(c *Config) { c.CA.Lifetime = 31 * 24 * time.Hour }, "state.ca.lifetime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			err := c.Validate("state.")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%v; want a problem naming %q", err, tc.want)
			}
		})
	}
}
