package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"
)

func TestIssueAndParse(t *testing.T) {
	ca, err := NewCA("example.org", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("eu-west", "eu-west-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBundle(cert, ca.Roots())
	if err != nil {
		t.Fatal(err)
	}
	want := ID{TrustDomain: "example.org", Role: RoleGateway, Region: "eu-west", Cluster: "eu-west-1"}
	if b.ID != want || b.ID.String() != "spiffe://example.org/gateway/region/eu-west/cluster/eu-west-1" {
		t.Fatalf("ID = %v", b.ID)
	}
}

// TestRoles: each role round-trips through a certificate, and only what
// it names it may do.
func TestRoles(t *testing.T) {
	ca, err := NewCA("example.org", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id        ID
		uri       string
		gateway   bool
		mayPolicy bool
	}{
		{ID{Role: RoleGateway, Region: "eu-west", Cluster: "a"}, "spiffe://example.org/gateway/region/eu-west/cluster/a", true, false},
		{ID{Role: RoleVoter, Region: "eu-west", Cluster: "a"}, "spiffe://example.org/voter/region/eu-west/cluster/a", true, false},
		{ID{Role: RoleOperator, Name: "alice"}, "spiffe://example.org/operator/alice", false, true},
		{ID{Role: RoleOperator, Name: "bob", Scope: "failover,export"}, "spiffe://example.org/operator/bob/scope/failover,export", false, false},
	} {
		cert, err := ca.IssueID(tc.id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewBundle(cert, ca.Roots())
		if err != nil {
			t.Fatal(err)
		}
		want := tc.id
		want.TrustDomain = "example.org"
		if b.ID != want || b.ID.String() != tc.uri {
			t.Errorf("%s: ID %+v (%s)", tc.uri, b.ID, b.ID)
		}
		if b.ID.IsGateway() != tc.gateway || b.ID.MayWrite("policy") != tc.mayPolicy {
			t.Errorf("%s: gateway %v, may write policy %v", tc.uri, b.ID.IsGateway(), b.ID.MayWrite("policy"))
		}
	}
	scoped := ID{Role: RoleOperator, Name: "bob", Scope: "failover,export"}
	if !scoped.MayWrite("export") || scoped.MayWrite("trust") {
		t.Errorf("scoped operator: export %v, trust %v", scoped.MayWrite("export"), scoped.MayWrite("trust"))
	}
	// The form of earlier releases is a gateway, never a voter.
	legacy, _ := url.Parse("spiffe://example.org/region/eu-west/cluster/a")
	id, err := Parse(&x509.Certificate{URIs: []*url.URL{legacy}})
	if err != nil || id.Role != RoleGateway || id.Cluster != "a" {
		t.Errorf("legacy id: %+v, %v", id, err)
	}
	if _, err := ca.IssueID(ID{Role: RoleOperator}, time.Hour); err == nil {
		t.Error("issued an operator certificate without a name")
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		uris []string
	}{
		{"none", nil},
		{"wrong path", []string{"spiffe://td/ns/x/sa/y"}},
		{"empty cluster", []string{"spiffe://td/region/r/cluster/"}},
		{"two ids", []string{"spiffe://td/region/r/cluster/a", "spiffe://td/region/r/cluster/b"}},
		{"unknown role", []string{"spiffe://td/admin/region/r/cluster/a"}},
		{"operator without a name", []string{"spiffe://td/operator"}},
		{"operator with an empty scope", []string{"spiffe://td/operator/alice/scope/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &x509.Certificate{}
			for _, u := range tc.uris {
				pu, _ := url.Parse(u)
				c.URIs = append(c.URIs, pu)
			}
			if _, err := Parse(c); !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("Parse = %v, want ErrNoIdentity", err)
			}
		})
	}
}

// mTLS between two bundles of one CA works; a bundle of another CA or
// another trust domain is refused on both sides.
func TestMutualTLS(t *testing.T) {
	ca, _ := NewCA("strait.local", time.Hour)
	other, _ := NewCA("strait.local", time.Hour)
	foreignTD, _ := NewCA("elsewhere", time.Hour)
	bundle := func(ca *CA, region, cluster string) *Bundle {
		c, err := ca.Issue(region, cluster, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewBundle(c, ca.Roots())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	server := bundle(ca, "eu-west", "b")
	for _, tc := range []struct {
		name   string
		client *Bundle
		ok     bool
	}{
		{"same CA", bundle(ca, "eu-central", "a"), true},
		{"other CA", bundle(other, "eu-central", "a"), false},
		{"other trust domain", bundle(foreignTD, "eu-central", "a"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan ID, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() == nil {
					id, _ := PeerID(tc.ConnectionState())
					got <- id
					tc.Write([]byte("x"))
				}
			}()
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), tc.client.ClientConfig("sni"))
			if err == nil {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
			}
			if tc.ok != (err == nil) {
				t.Fatalf("handshake err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok {
				if id := <-got; id.Cluster != "a" || id.Region != "eu-central" {
					t.Fatalf("server saw peer %v", id)
				}
			}
		})
	}
}

func TestSaveLoadCA(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("strait.local", time.Hour)
	if err := ca.SaveCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.WriteFiles(filepath.Join(dir, "gw"), "us-east", "us-east-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := LoadFiles(filepath.Join(dir, "gw", "cert.pem"), filepath.Join(dir, "gw", "key.pem"), filepath.Join(dir, "gw", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if b.ID.Cluster != "us-east-1" || b.ID.TrustDomain != "strait.local" {
		t.Fatalf("loaded %v", b.ID)
	}
	if _, err := b.Certificate().Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued by the loaded CA does not chain to the original: %v", err)
	}
}
