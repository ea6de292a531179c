package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFiles(t *testing.T, ca *CA, id ID, dir string) {
	t.Helper()
	if err := ca.WriteIDFiles(dir, id, time.Hour); err != nil {
		t.Fatal(err)
	}
}

func filesManager(t *testing.T, dir string, b *Bundle) (*Manager, error) {
	return StartManager(context.Background(), ManagerConfig{Bundle: b, Source: SourceFiles,
		Files: FilesSource{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem"), Poll: 20 * time.Millisecond}})
}

func TestFilesSourceRefusesAnotherIdentity(t *testing.T) {
	ca, err := NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, ca, ID{Role: RoleGateway, Region: "r1", Cluster: "b"}, dir)
	b := NewBundleFor(ID{TrustDomain: "strait.local", Role: RoleGateway, Region: "r1", Cluster: "a"}, nil)
	_, err = filesManager(t, dir, b)
	if err == nil || !strings.Contains(err.Error(), "cluster/b") || !strings.Contains(err.Error(), "want spiffe://strait.local/gateway/region/r1/cluster/a") {
		t.Fatalf("start with another identity's files: %v", err)
	}
	if b.Certificate() != nil {
		t.Fatal("the bundle took a certificate of another identity")
	}
}

// A file source keeps serving its certificate while the files are broken,
// counts the failure once, and takes the next good certificate.
func TestFilesSourceKeepsCertificateOverBadFiles(t *testing.T) {
	ca, err := NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := ID{TrustDomain: "strait.local", Role: RoleGateway, Region: "r1", Cluster: "a"}
	writeFiles(t, ca, id, dir)
	b := NewBundleFor(id, nil)
	var rootsSeen [][]*x509.Certificate
	m, err := StartManager(context.Background(), ManagerConfig{Bundle: b, Source: SourceFiles,
		Files:   FilesSource{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem"), Poll: 20 * time.Millisecond},
		OnRoots: func(r []*x509.Certificate) { rootsSeen = append(rootsSeen, r) }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	first := b.Certificate()
	if first == nil || len(rootsSeen) != 1 || !rootsSeen[0][0].Equal(ca.cert) {
		t.Fatalf("after start: certificate %v, roots %v", first, rootsSeen)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Status().Failures == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := m.Status()
	if st.Failures != 1 || !strings.Contains(st.LastError, filepath.Join(dir, "cert.pem")) {
		t.Fatalf("status over broken files: %+v", st)
	}
	time.Sleep(100 * time.Millisecond)
	if m.Status().Failures != 1 {
		t.Fatalf("the same broken files counted %d times", m.Status().Failures)
	}
	if b.Certificate() != first {
		t.Fatal("the certificate changed while the files were broken")
	}
	writeFiles(t, ca, id, dir)
	for time.Now().Before(deadline) && b.Certificate() == first {
		time.Sleep(10 * time.Millisecond)
	}
	if b.Certificate() == first {
		t.Fatal("the good certificate written after the broken one was not taken")
	}
	if st := m.Status(); st.Renewals != 1 || st.LastError != "" || st.Serial != SerialHex(b.Certificate().Leaf) {
		t.Fatalf("status after the good files: %+v", st)
	}
}

func TestTrustVerifyReasons(t *testing.T) {
	ca, err := NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("strait.local", time.Hour)
	partner, _ := NewCA("partner.example", time.Hour)
	leaf := func(c *CA, id ID, validity time.Duration) []*x509.Certificate {
		t.Helper()
		cert, err := c.IssueID(id, validity)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := x509.ParseCertificate(cert.Certificate[0])
		return []*x509.Certificate{x}
	}
	gw := ID{Role: RoleGateway, Region: "r1", Cluster: "a"}
	good := leaf(ca, gw, time.Hour)
	revokedSerial := leaf(ca, ID{Role: RoleGateway, Region: "r1", Cluster: "b"}, time.Hour)
	trust, err := NewTrust([]Domain{{Name: "strait.local", Roots: ca.Roots()}, {Name: "partner.example", Roots: partner.Roots(), Clusters: []string{"p1"}}},
		Revocations{Serials: []string{strings.ToUpper(SerialHex(revokedSerial[0]))}, IDs: []string{"spiffe://strait.local/gateway/region/r1/cluster/c"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
		want  Reason
	}{
		{"none", nil, now, ReasonNoCertificate},
		{"expired", leaf(ca, gw, -30*time.Second), now, ReasonExpired},
		{"not yet valid", good, now.Add(-time.Hour), ReasonNotYetValid},
		{"self-signed", []*x509.Certificate{ca.cert}, now, ReasonSelfSigned},
		{"unknown trust domain", leaf(mustCA(t, "elsewhere.example"), gw, time.Hour), now, ReasonUnknownTrustDomain},
		{"another CA of the domain", leaf(other, gw, time.Hour), now, ReasonUnknownAuthority},
		{"partner cluster not allowed", leaf(partner, gw, time.Hour), now, ReasonClusterNotAllowed},
		{"partner operator", leaf(partner, ID{Role: RoleOperator, Name: "ops"}, time.Hour), now, ReasonClusterNotAllowed},
		{"revoked serial", revokedSerial, now, ReasonRevoked},
		{"revoked identity", leaf(ca, ID{Role: RoleGateway, Region: "r1", Cluster: "c"}, time.Hour), now, ReasonRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := trust.Verify(tc.chain, x509.ExtKeyUsageClientAuth, tc.at)
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason != tc.want {
				t.Fatalf("Verify: %v, want reason %s", err, tc.want)
			}
		})
	}
	for _, c := range [][]*x509.Certificate{good, leaf(partner, ID{Role: RoleGateway, Region: "r9", Cluster: "p1"}, time.Hour)} {
		if id, err := trust.Verify(c, x509.ExtKeyUsageServerAuth, now); err != nil {
			t.Fatalf("Verify %s: %v", c[0].URIs[0], err)
		} else if id.Cluster != "a" && id.Cluster != "p1" {
			t.Fatalf("Verify gave %v", id)
		}
	}
	if _, err := NewTrust([]Domain{{Name: "x"}}, Revocations{}); err == nil || !strings.Contains(err.Error(), "no root certificates") {
		t.Fatalf("a domain without roots: %v", err)
	}
	if _, err := NewTrust(nil, Revocations{Serials: []string{"zz"}}); err == nil || !strings.Contains(err.Error(), `"zz"`) {
		t.Fatalf("a serial that is not hex: %v", err)
	}
}

func mustCA(t *testing.T, td string) *CA {
	t.Helper()
	ca, err := NewCA(td, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
