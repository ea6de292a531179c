package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/fuzzseed"
)

func testIntermediate(t *testing.T) (*CA, *Intermediate) {
	t.Helper()
	root, err := NewCA("strait.local", 4*DefaultLifetime)
	if err != nil {
		t.Fatal(err)
	}
	// Longer than DefaultLifetime, so that a leaf of the default
	// lifetime is not cut short at the intermediate's end.
	chain, key, err := root.IssueIntermediate(2 * DefaultLifetime)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ParseIntermediate(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	return root, in
}

func csrOf(t *testing.T, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// TestSignCSR: the intermediate signs exactly the identity a CSR names
// and was authorized for, nothing else, and the certificate chains to the
// root with an empty subject, the usages of a gateway and the lifetime
// asked for from a minute before now.
func TestSignCSR(t *testing.T) {
	root, in := testIntermediate(t)
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	gw := ID{TrustDomain: "strait.local", Role: RoleGateway, Region: "eu-west", Cluster: "eu-west-1"}
	good := &x509.CertificateRequest{URIs: []*url.URL{gw.URI()}}
	csr := csrOf(t, good)
	chainPEM, err := in.SignCSR(csr, gw, 0)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ParsePEMCertificates(chainPEM)
	if err != nil || len(chain) != 2 || !chain[1].Equal(in.Certificate()) {
		t.Fatalf("chain %d certificates (%v): want the leaf and the intermediate", len(chain), err)
	}
	leaf := chain[0]
	trust, err := NewTrust([]Domain{{Name: "strait.local", Roots: root.Roots()}}, Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if id, err := trust.Verify(chain, u, time.Now()); err != nil || id != gw {
			t.Fatalf("verify for %v: %v, %v", u, id, err)
		}
	}
	if leaf.Subject.CommonName != "" || leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature || len(leaf.URIs) != 1 {
		t.Errorf("leaf CN %q, CA %v, key usage %v, URIs %v", leaf.Subject.CommonName, leaf.IsCA, leaf.KeyUsage, leaf.URIs)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != DefaultLifetime+time.Minute {
		t.Errorf("valid %s, want 24h from a minute ago", life)
	}

	// An injected clock dates the certificate.
	in.SetClock(func() time.Time { return now })
	chainPEM, err = in.SignCSR(csr, gw, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chain, _ = ParsePEMCertificates(chainPEM)
	if !chain[0].NotBefore.Equal(now.Add(-time.Minute)) || !chain[0].NotAfter.Equal(now.Add(time.Hour)) {
		t.Errorf("valid %s to %s, want %s to %s", chain[0].NotBefore, chain[0].NotAfter, now.Add(-time.Minute), now.Add(time.Hour))
	}
	in.SetClock(time.Now)

	voter := gw
	voter.Role = RoleVoter
	other := gw
	other.Cluster = "eu-west-2"
	for _, tc := range []struct {
		name string
		tmpl *x509.CertificateRequest
		want ID
	}{
		{"another cluster than authorized", good, other},
		{"a gateway where a voter was authorized", good, voter},
		{"a DNS name besides the SPIFFE ID", &x509.CertificateRequest{URIs: good.URIs, DNSNames: []string{"gw.example"}}, gw},
		{"an IP address besides", &x509.CertificateRequest{URIs: good.URIs, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, gw},
		{"an e-mail address besides", &x509.CertificateRequest{URIs: good.URIs, EmailAddresses: []string{"a@b.example"}}, gw},
		{"two SPIFFE IDs", &x509.CertificateRequest{URIs: []*url.URL{gw.URI(), other.URI()}}, gw},
		{"no SPIFFE ID", &x509.CertificateRequest{DNSNames: []string{"gw.example"}}, gw},
		{"an https URI", &x509.CertificateRequest{URIs: []*url.URL{{Scheme: "https", Host: "strait.local", Path: gw.URI().Path}}}, gw},
		{"an operator", &x509.CertificateRequest{URIs: []*url.URL{ID{TrustDomain: "strait.local", Role: RoleOperator, Name: "eve"}.URI()}},
			ID{TrustDomain: "strait.local", Role: RoleOperator, Name: "eve"}},
		{"the earlier SPIFFE form", &x509.CertificateRequest{URIs: []*url.URL{{Scheme: "spiffe", Host: "strait.local", Path: "/region/eu-west/cluster/eu-west-1"}}}, gw},
		{"another trust domain", &x509.CertificateRequest{URIs: []*url.URL{{Scheme: "spiffe", Host: "evil.example", Path: gw.URI().Path}}},
			ID{TrustDomain: "evil.example", Role: RoleGateway, Region: "eu-west", Cluster: "eu-west-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := in.SignCSR(csrOf(t, tc.tmpl), tc.want, 0); !errors.Is(err, ErrCSR) {
				t.Fatalf("%v; want ErrCSR", err)
			}
		})
	}
	t.Run("a bad signature", func(t *testing.T) {
		bad := csrOf(t, good)
		bad.Signature[len(bad.Signature)-1] ^= 0xff
		if _, err := in.SignCSR(bad, gw, 0); !errors.Is(err, ErrCSR) {
			t.Fatalf("%v; want ErrCSR", err)
		}
	})
	t.Run("never past the intermediate", func(t *testing.T) {
		chainPEM, err := in.SignCSR(csr, gw, 365*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		chain, _ := ParsePEMCertificates(chainPEM)
		if !chain[0].NotAfter.Equal(in.Certificate().NotAfter) {
			t.Fatalf("valid until %s, the intermediate until %s", chain[0].NotAfter, in.Certificate().NotAfter)
		}
	})
}

// TestIntermediateFiles: strait ca intermediate's files load back; the
// key is private, an existing key is not replaced, an intermediate cannot
// sign another CA, and a chain without its root or with another root's
// key is refused.
func TestIntermediateFiles(t *testing.T) {
	root, err := NewCA("strait.local", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	chainFile, keyFile, err := root.WriteIntermediateFiles(dir, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v; want mode 0600", fi, err)
	}
	in, err := LoadIntermediate(chainFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c := in.Certificate()
	if in.TrustDomain != "strait.local" || !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || len(in.Roots()) != 1 || !in.Roots()[0].Equal(root.Roots()[0]) {
		t.Fatalf("intermediate %+v", c)
	}
	if _, _, err := root.WriteIntermediateFiles(dir, time.Hour); err == nil {
		t.Fatal("an existing intermediate key was replaced")
	}
	if _, _, err := root.IssueIntermediate(49 * time.Hour); err == nil {
		t.Fatal("an intermediate outliving its root was issued")
	}
	chain, _ := os.ReadFile(chainFile)
	key, _ := os.ReadFile(keyFile)
	certs, _ := ParsePEMCertificates(chain)
	other, err := NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(saveCA(t, other))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string][2][]byte{
		"no root":       {chain[:len(chain)-len(root.CertPEM())], key},
		"another key":   {chain, otherKey},
		"another root":  {append(pemOf(certs[0]), other.CertPEM()...), key},
		"the root only": {root.CertPEM(), key},
	} {
		if _, err := ParseIntermediate(tc[0], tc[1]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func saveCA(t *testing.T, ca *CA) string {
	dir := t.TempDir()
	if err := ca.SaveCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "ca-key.pem")
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// TestTokenPinsTheRoot: a token's text reads back; a server is accepted
// only when its chain holds the pinned root and its certificate is a
// voter's chaining to it.
func TestTokenPinsTheRoot(t *testing.T) {
	root, in := testIntermediate(t)
	tok, err := NewToken(root.Roots()[0])
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseToken(" " + tok.String() + "\n")
	if err != nil || back != tok {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	if !strings.HasPrefix(tok.SecretHash(), "sha256:") || strings.Contains(tok.SecretHash(), tok.Secret) {
		t.Fatalf("secret hash %s", tok.SecretHash())
	}
	if RootHash(root.Roots()[0]) != "sha256:"+tok.RootHash {
		t.Fatalf("root hash %s, token pins %s", RootHash(root.Roots()[0]), tok.RootHash)
	}
	serverChain := func(ca *CA, id ID, withRoot bool) []*x509.Certificate {
		c, err := ca.IssueID(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		out := []*x509.Certificate{leaf}
		if withRoot {
			out = append(out, ca.Roots()...)
		}
		return out
	}
	voter := ID{Role: RoleVoter, Region: "r1", Cluster: "c1"}
	if id, r, err := tok.VerifyPinned(serverChain(root, voter, true), time.Now()); err != nil || id.Role != RoleVoter || !r.Equal(root.Roots()[0]) {
		t.Fatalf("a voter of the pinned root: %v, %v", id, err)
	}
	// A voter whose certificate comes from the intermediate.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{ID{TrustDomain: "strait.local", Role: RoleVoter, Region: "r1", Cluster: "c1"}.URI()}}, key)
	csr, _ := x509.ParseCertificateRequest(der)
	chainPEM, err := in.SignCSR(csr, ID{TrustDomain: "strait.local", Role: RoleVoter, Region: "r1", Cluster: "c1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viaInter, _ := ParsePEMCertificates(chainPEM)
	if _, _, err := tok.VerifyPinned(append(viaInter, root.Roots()...), time.Now()); err != nil {
		t.Fatalf("a voter signed by the intermediate: %v", err)
	}
	other, _ := NewCA("strait.local", time.Hour)
	for name, chain := range map[string][]*x509.Certificate{
		"no root in the chain":               serverChain(root, voter, false),
		"another root":                       serverChain(other, voter, true),
		"a gateway, not a voter":             serverChain(root, ID{Role: RoleGateway, Region: "r1", Cluster: "c1"}, true),
		"the pinned root, a leaf of another": append(serverChain(other, voter, false), root.Roots()...),
		"nothing":                            nil,
	} {
		if _, _, err := tok.VerifyPinned(chain, time.Now()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Over TLS: a server on EnrolmentServerConfig passes; the client
	// presents no certificate.
	cert, err := root.IssueID(voter, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBundle(cert, root.Roots())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.EnrolmentServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan int, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if c.(*tls.Conn).Handshake() == nil {
				peers <- len(c.(*tls.Conn).ConnectionState().PeerCertificates)
				_, _ = c.Write([]byte{1})
			}
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), tok.EnrolmentClientConfig())
	if err != nil {
		t.Fatalf("enrolment handshake: %v", err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if n := <-peers; n != 0 {
		t.Fatalf("the client presented %d certificates, want none", n)
	}
	wrong, _ := NewToken(other.Roots()[0])
	if c, err := tls.Dial("tcp", ln.Addr().String(), wrong.EnrolmentClientConfig()); err == nil {
		c.Close()
		t.Fatal("a token pinning another root accepted the server")
	}
}

// FuzzParseToken: any text is a token or a clear ErrBadToken, never a
// panic; an accepted token prints back as it was read, and errors never
// repeat the secret.
func FuzzParseToken(f *testing.F) {
	fuzzseed.Files(f, "testdata/token/*")
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseToken(string(b))
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error %v does not wrap ErrBadToken", err)
			}
			if parts := strings.Split(strings.TrimSpace(string(b)), "."); len(parts) > 2 && len(parts[2]) >= 8 && strings.Contains(err.Error(), parts[2]) {
				t.Fatalf("error %q repeats the secret", err)
			}
			return
		}
		if tok.String() != strings.TrimSpace(string(b)) {
			t.Fatalf("read %q, prints %q", b, tok.String())
		}
		if !IsTokenID(tok.ID) {
			t.Fatalf("accepted id %q", tok.ID)
		}
	})
}
