package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// CertSpec is the exact shape of a certificate IssueSpec signs: what
// Issue and IssueID choose for a gateway (validity from a minute ago,
// server and client usage) spelled out, so that tests and drills can
// make the shapes a gateway must refuse (expired, not yet valid, the
// wrong extended key usage, self-signed).
type CertSpec struct {
	// ID is the identity the certificate carries; its trust domain is
	// the CA's.
	ID ID
	// NotBefore and NotAfter bound its validity.
	NotBefore, NotAfter time.Time
	// ExtKeyUsage lists its extended key usages; empty means none (any
	// usage, as x509 reads it).
	ExtKeyUsage []x509.ExtKeyUsage
	// SelfSigned signs the certificate with its own key instead of the
	// CA's: it chains to nothing.
	SelfSigned bool
}

// IssueSpec signs a certificate of exactly spec's shape. Its serial is
// returned in the certificate's Leaf (SerialHex).
func (ca *CA) IssueSpec(spec CertSpec) (tls.Certificate, error) {
	id := spec.ID
	id.TrustDomain = ca.TrustDomain
	if _, err := parseURI(id.URI()); err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate: %w", err)
	}
	if !spec.NotAfter.After(spec.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("issue certificate for %s: NotAfter %s is not after NotBefore %s", id, spec.NotAfter, spec.NotBefore)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key for %s: %w", id, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: strings.TrimPrefix(id.String(), "spiffe://")},
		NotBefore:    spec.NotBefore,
		NotAfter:     spec.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  spec.ExtKeyUsage,
		URIs:         []*url.URL{id.URI()},
	}
	parent, signer := ca.cert, any(ca.key)
	if spec.SelfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("encode key for %s: %w", id, err)
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate for %s: %w", id, err)
	}
	return cert, nil
}

// ParseID reads a SPIFFE ID in one of the forms of ID.URI (or the
// gateway form of earlier releases) and returns it; ID.String of the
// result is its canonical spelling, the one revocations match.
func ParseID(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return ID{}, fmt.Errorf("%w: %q is not a spiffe://<trust-domain>/... id", ErrNoIdentity, s)
	}
	id, err := parseURI(u)
	if err != nil {
		return ID{}, err
	}
	for _, f := range []string{id.Region, id.Cluster, id.Name, strings.ReplaceAll(id.Scope, ",", "")} {
		if f != "" && !isName(f) {
			return ID{}, fmt.Errorf("%w: %q in %s is not a name (lower-case letters, digits, '-', '.')", ErrNoIdentity, f, s)
		}
	}
	return id, nil
}
