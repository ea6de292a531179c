package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestDNSNameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		id   ID
		name string
	}{
		{ID{Role: RoleGateway, Region: "eu-west", Cluster: "a"}, "a.eu-west.gw.example.org"},
		{ID{Role: "", Region: "eu-west", Cluster: "a"}, "a.eu-west.gw.example.org"},
		{ID{Role: RoleVoter, Region: "us-east", Cluster: "b-1"}, "b-1.us-east.voters.gw.example.org"},
		// A region named like the voters label is still a gateway's:
		// the number of labels decides.
		{ID{Role: RoleGateway, Region: "voters", Cluster: "c"}, "c.voters.gw.example.org"},
	} {
		name, err := tc.id.DNSName("GW.Example.org.")
		if err != nil || name != tc.name {
			t.Errorf("%+v: DNSName = %q, %v; want %q", tc.id, name, err, tc.name)
			continue
		}
		got, err := ParseDNS(&x509.Certificate{DNSNames: []string{"www.example.org", strings.ToUpper(name)}}, "gw.example.org", "td")
		want := tc.id
		want.TrustDomain = "td"
		if want.Role == "" {
			want.Role = RoleGateway
		}
		if err != nil || got != want {
			t.Errorf("ParseDNS(%s) = %+v, %v; want %+v", name, got, err, want)
		}
	}
	for _, id := range []ID{
		{Role: RoleOperator, Name: "alice"},
		{Role: RoleGateway, Region: "eu.west", Cluster: "a"},
		{Role: RoleGateway, Region: "eu-west", Cluster: ""},
	} {
		if name, err := id.DNSName("gw.example.org"); err == nil {
			t.Errorf("%+v has DNS name %q, want none", id, name)
		}
	}
}

func TestParseDNSRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		names  []string
		suffix string
		want   string // in the error
	}{
		{"no names", nil, "gw.example.org", "no DNS name under gw.example.org"},
		{"only names elsewhere", []string{"a.eu.example.com"}, "gw.example.org", "no DNS name under"},
		{"the suffix itself", []string{"gw.example.org"}, "gw.example.org", "no DNS name under"},
		{"two names", []string{"a.eu.gw.example.org", "b.eu.gw.example.org"}, "gw.example.org", "2 DNS names under"},
		{"one label", []string{"a.gw.example.org"}, "gw.example.org", "is not <cluster>.<region>"},
		{"three labels, not voters", []string{"a.eu.x.gw.example.org"}, "gw.example.org", "is not <cluster>.<region>"},
		{"four labels", []string{"a.eu.x.voters.gw.example.org"}, "gw.example.org", "is not <cluster>.<region>"},
		{"wildcard", []string{"*.eu.gw.example.org"}, "gw.example.org", "cluster"},
		{"empty label", []string{"a..gw.example.org"}, "gw.example.org", "region is empty"},
		{"underscore", []string{"a_b.eu.gw.example.org"}, "gw.example.org", "want lower-case letters"},
		{"leading hyphen", []string{"-a.eu.gw.example.org"}, "gw.example.org", "starts or ends with '-'"},
		{"long label", []string{strings.Repeat("a", 64) + ".eu.gw.example.org"}, "gw.example.org", "longer than 63"},
		{"top-level suffix", []string{"a.eu.org"}, "org", "at least two labels"},
		{"bad suffix", []string{"a.eu.gw.example.org"}, "gw_x.org", "DNS suffix"},
		{"Kelvin sign is not k", []string{"\u212a.eu.gw.example.org"}, "gw.example.org", "want lower-case letters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseDNS(&x509.Certificate{DNSNames: tc.names}, tc.suffix, "td")
			if !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseDNS = %+v, %v; want ErrNoIdentity saying %q", id, err, tc.want)
			}
		})
	}
}

func TestNewTrustDNSSuffix(t *testing.T) {
	ca, _ := NewCA("a", time.Hour)
	for _, tc := range []struct {
		name    string
		domains []Domain
		want    string
	}{
		{"equal suffixes", []Domain{{Name: "a", Roots: ca.Roots(), DNSSuffix: "gw.example.org"}, {Name: "b", Roots: ca.Roots(), DNSSuffix: "GW.example.org."}}, "overlaps"},
		{"nested suffixes", []Domain{{Name: "a", Roots: ca.Roots(), DNSSuffix: "gw.example.org"}, {Name: "b", Roots: ca.Roots(), DNSSuffix: "eu.gw.example.org"}}, "overlaps"},
		{"one label", []Domain{{Name: "a", Roots: ca.Roots(), DNSSuffix: "org"}}, "at least two labels"},
		{"server auth as client without a suffix", []Domain{{Name: "a", Roots: ca.Roots(), ServerAuthAsClient: true}}, "needs a DNS suffix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewTrust(tc.domains, Revocations{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewTrust = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	tr, err := NewTrust([]Domain{{Name: "a", Roots: ca.Roots(), DNSSuffix: "GW.Example.org."}, {Name: "b", Roots: ca.Roots(), DNSSuffix: "gw.example.com"}}, Revocations{})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := tr.Domain("a"); d.DNSSuffix != "gw.example.org" {
		t.Errorf("suffix kept as %q, want it normalized", d.DNSSuffix)
	}
}

// dnsCA issues DNS-name certificates the way ACME directories do: no URI,
// server authentication only unless asked.
type dnsCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newDNSCA(t testing.TB) *dnsCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "test ACME root"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &dnsCA{cert: cert, key: key}
}

func (ca *dnsCA) issue(t testing.TB, uri string, usages []x509.ExtKeyUsage, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serial(), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages, DNSNames: names}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

var (
	serverOnly = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	bothUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

// TestVerifyDNSIdentity: a DNS name identifies a gateway only for the
// domain that declares its suffix, only with that domain's roots, and
// under the same rules (clusters, revocation, key usage) as a SPIFFE ID.
func TestVerifyDNSIdentity(t *testing.T) {
	acme, other := newDNSCA(t), newDNSCA(t)
	spiffeCA, _ := NewCA("strait.local", time.Hour)
	declared := Domain{Name: "acme.test", Roots: []*x509.Certificate{acme.cert}, DNSSuffix: "gw.acme.test"}
	withClients := declared
	withClients.ServerAuthAsClient = true
	restricted := declared
	restricted.Clusters = []string{"b"}
	undeclared := Domain{Name: "acme.test", Roots: []*x509.Certificate{acme.cert}}
	own := Domain{Name: "strait.local", Roots: spiffeCA.Roots()}
	gw := ID{TrustDomain: "acme.test", Role: RoleGateway, Region: "eu-west", Cluster: "a"}
	voter := ID{TrustDomain: "acme.test", Role: RoleVoter, Region: "eu-west", Cluster: "a"}

	spiffeCert, _ := spiffeCA.Issue("eu-west", "a", time.Hour)
	for _, tc := range []struct {
		name    string
		domains []Domain
		rev     Revocations
		cert    tls.Certificate
		usage   x509.ExtKeyUsage
		want    ID
		refused Reason
	}{
		{"gateway as server", []Domain{own, declared}, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, gw, ""},
		{"voter as server", []Domain{declared}, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.voters.gw.acme.test"), x509.ExtKeyUsageServerAuth, voter, ""},
		{"client with client usage", []Domain{declared}, Revocations{}, acme.issue(t, "", bothUsages, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageClientAuth, gw, ""},
		{"server-only client refused by default", []Domain{declared}, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageClientAuth, ID{}, ReasonWrongKeyUsage},
		{"server-only client accepted when declared", []Domain{withClients}, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageClientAuth, gw, ""},
		{"suffix not declared", []Domain{own, undeclared}, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonDNSNotDeclared},
		{"server-only client under an undeclared suffix", []Domain{own, undeclared}, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageClientAuth, ID{}, ReasonDNSNotDeclared},
		{"no trust domain at all", nil, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonDNSNotDeclared},
		{"another CA's name under the suffix", []Domain{own, declared}, Revocations{}, other.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonUnknownAuthority},
		{"own CA's DNS name under the suffix", []Domain{own, declared}, Revocations{}, spiffeCA.mustIssueDNS(t, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonUnknownAuthority},
		{"malformed name under the suffix", []Domain{declared}, Revocations{}, acme.issue(t, "", serverOnly, "a.b.c.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonNoIdentity},
		{"cluster not allowed", []Domain{restricted}, Revocations{}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonClusterNotAllowed},
		{"revoked by SPIFFE ID", []Domain{declared}, Revocations{IDs: []string{gw.String()}}, acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonRevoked},
		{"a spiffe URI decides, DNS names aside", []Domain{own, declared}, Revocations{}, spiffeCert, x509.ExtKeyUsageServerAuth, ID{TrustDomain: "strait.local", Role: RoleGateway, Region: "eu-west", Cluster: "a"}, ""},
		{"a malformed spiffe URI is not read as DNS", []Domain{declared}, Revocations{}, acme.issue(t, "spiffe://acme.test/x", serverOnly, "a.eu-west.gw.acme.test"), x509.ExtKeyUsageServerAuth, ID{}, ReasonNoIdentity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := NewTrust(tc.domains, tc.rev)
			if err != nil {
				t.Fatal(err)
			}
			chain := []*x509.Certificate{tc.cert.Leaf}
			id, err := tr.Verify(chain, tc.usage, time.Now())
			var r *RefusedError
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			case tc.refused == "" && id != tc.want:
				t.Fatalf("Verify = %+v, want %+v", id, tc.want)
			case tc.refused != "" && (!errors.As(err, &r) || r.Reason != tc.refused):
				t.Fatalf("Verify = %+v, %v; want refused (%s)", id, err, tc.refused)
			case tc.refused != "" && r.Subject == "":
				t.Fatalf("refusal names no subject: %v", r)
			}
		})
	}
}

// mustIssueDNS is a certificate of the SPIFFE CA that names a DNS name
// and no URI.
func (ca *CA) mustIssueDNS(t testing.TB, name string) tls.Certificate {
	t.Helper()
	d := &dnsCA{cert: ca.cert, key: ca.key}
	return d.issue(t, "", bothUsages, name)
}

// TestBundleDNSIdentity: a bundle takes a DNS-identity certificate only
// when its trust domain declares the suffix, and reads a peer's DNS
// identity through its trust.
func TestBundleDNSIdentity(t *testing.T) {
	acme := newDNSCA(t)
	id := ID{TrustDomain: "acme.test", Role: RoleGateway, Region: "eu-west", Cluster: "a"}
	cert := acme.issue(t, "", serverOnly, "a.eu-west.gw.acme.test")

	undeclared, _ := NewTrust([]Domain{{Name: "acme.test", Roots: []*x509.Certificate{acme.cert}}}, Revocations{})
	b := NewBundleFor(id, undeclared)
	if err := b.SetCertificate(cert); !errors.Is(err, ErrDNSNotDeclared) {
		t.Fatalf("SetCertificate without a declared suffix = %v, want ErrDNSNotDeclared", err)
	}
	if _, err := b.DNSName(); err == nil {
		t.Fatal("DNSName without a declared suffix succeeded")
	}

	declared, _ := NewTrust([]Domain{{Name: "acme.test", Roots: []*x509.Certificate{acme.cert}, DNSSuffix: "gw.acme.test"}}, Revocations{})
	b.SetTrust(declared)
	if name, err := b.DNSName(); err != nil || name != "a.eu-west.gw.acme.test" {
		t.Fatalf("DNSName = %q, %v", name, err)
	}
	if err := b.SetCertificate(cert); err != nil {
		t.Fatalf("SetCertificate: %v", err)
	}
	other := acme.issue(t, "", serverOnly, "b.eu-west.gw.acme.test")
	if err := b.SetCertificate(other); err == nil || !strings.Contains(err.Error(), "want "+id.String()) {
		t.Fatalf("SetCertificate of another cluster's name = %v", err)
	}

	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
	if got, err := b.PeerID(cs); err != nil || got != id {
		t.Fatalf("Bundle.PeerID = %+v, %v", got, err)
	}
	if _, err := PeerID(cs); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("PeerID (SPIFFE only) = %v, want ErrNoIdentity", err)
	}
	if _, err := b.PeerID(tls.ConnectionState{}); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("Bundle.PeerID without a certificate = %v", err)
	}
}

func FuzzParseDNS(f *testing.F) {
	for _, s := range []struct{ name, suffix string }{
		{"a.eu-west.gw.example.org", "gw.example.org"},
		{"a.eu-west.voters.gw.example.org", "gw.example.org"},
		{"A.EU.GW.EXAMPLE.ORG", "gw.example.org."},
		{"*.eu.gw.example.org", "gw.example.org"},
		{"a..gw.example.org", "gw.example.org"},
		{"a.eu.gw.example.org", "org"},
		{"\xff.eu.gw.example.org", "gw.example.org"},
		{"\u212a.eu.gw.example.org", "gw.example.org"},
		{"a.eu.gw.\u212a.org", "gw.k.org"},
	} {
		f.Add(s.name, s.suffix)
	}
	root := newDNSCA(f).cert
	f.Fuzz(func(t *testing.T, name, suffix string) {
		cert := &x509.Certificate{DNSNames: []string{name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		id, err := ParseDNS(cert, suffix, "td")
		if err != nil {
			if !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("error %v does not wrap ErrNoIdentity", err)
			}
			return
		}
		if !id.IsGateway() || id.TrustDomain != "td" {
			t.Fatalf("ParseDNS(%q, %q) = %+v", name, suffix, id)
		}
		// The mapping is one-to-one: the identity's DNS name is the name.
		back, err := id.DNSName(suffix)
		if err != nil || back != lowerASCII(name) {
			t.Fatalf("ParseDNS(%q, %q) = %+v, whose DNS name is %q, %v", name, suffix, id, back, err)
		}
		if _, err := parseURI(id.URI()); err != nil {
			t.Fatalf("identity %+v has no valid SPIFFE ID: %v", id, err)
		}
		tr, err := NewTrust([]Domain{{Name: "td", Roots: []*x509.Certificate{root}, DNSSuffix: suffix}}, Revocations{})
		if err != nil {
			t.Fatalf("NewTrust refuses suffix %q that ParseDNS took: %v", suffix, err)
		}
		if got, err := tr.IDOf(cert); err != nil || got != id {
			t.Fatalf("IDOf = %+v, %v; want %+v", got, err, id)
		}
	})
}
