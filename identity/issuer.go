package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// The federation's CA has two levels. The root (`strait ca init`) stays
// offline: it signs an intermediate (`strait ca intermediate`), which the
// voters that serve certificate requests hold (state.ca). The
// intermediate may sign only end-entity certificates (MaxPathLen 0), and
// signs only what a CSR proves: a key, and exactly one SPIFFE ID of a
// gateway or voter. Operators' certificates come from the root, offline.

// DefaultLifetime is how long a certificate signed from a CSR is valid
// unless the request or the CA asks for less.
const DefaultLifetime = 24 * time.Hour

// maxBackdate is how far before its signing a certificate is valid from,
// for peers whose clocks run a little behind.
const maxBackdate = time.Minute

// ErrCSR is wrapped by every refused certificate request: one that is
// malformed, badly signed, names something other than exactly one
// SPIFFE ID, or names another identity than the one it was authorized
// for.
var ErrCSR = errors.New("certificate request refused")

// Intermediate is an online CA of the federation: an intermediate
// certificate signed by the offline root, its key, and the root(s) it
// chains to.
type Intermediate struct {
	TrustDomain string
	cert        *x509.Certificate
	key         crypto.Signer
	roots       []*x509.Certificate
	rootsPEM    []byte
	now         func() time.Time
}

// IssueIntermediate signs an intermediate CA for ca's trust domain, valid
// for validity from now (and never past the root), and returns its chain
// (the intermediate, then the root) and its key in PEM.
func (ca *CA) IssueIntermediate(validity time.Duration) (chainPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate intermediate key: %w", err)
	}
	now := time.Now()
	if end := now.Add(validity); end.After(ca.cert.NotAfter) {
		return nil, nil, fmt.Errorf("intermediate valid until %s would outlive its root (until %s): ask for a shorter validity",
			end.UTC().Format(time.RFC3339), ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "strait intermediate CA " + ca.TrustDomain},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: ca.TrustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign intermediate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode intermediate key: %w", err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, ca.certPEM...)
	return chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// WriteIntermediateFiles issues an intermediate and writes
// dir/intermediate.pem (the intermediate, then the root) and
// dir/intermediate-key.pem (mode 0600). It refuses to replace a key.
func (ca *CA) WriteIntermediateFiles(dir string, validity time.Duration) (chainFile, keyFile string, err error) {
	chainFile, keyFile = filepath.Join(dir, "intermediate.pem"), filepath.Join(dir, "intermediate-key.pem")
	if _, err := os.Stat(keyFile); err == nil {
		return "", "", fmt.Errorf("%s exists: refusing to replace an intermediate key", keyFile)
	}
	chain, key, err := ca.IssueIntermediate(validity)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", keyFile, err)
	}
	if err := os.WriteFile(chainFile, chain, 0o644); err != nil {
		return "", "", fmt.Errorf("write %s: %w", chainFile, err)
	}
	return chainFile, keyFile, nil
}

// LoadIntermediate reads an intermediate written by
// WriteIntermediateFiles.
func LoadIntermediate(chainFile, keyFile string) (*Intermediate, error) {
	chain, err := os.ReadFile(chainFile)
	if err != nil {
		return nil, fmt.Errorf("read intermediate: %w", err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read intermediate key: %w", err)
	}
	in, err := ParseIntermediate(chain, key)
	if err != nil {
		return nil, fmt.Errorf("intermediate %s, %s: %w", chainFile, keyFile, err)
	}
	return in, nil
}

// ParseIntermediate reads an intermediate from its PEM chain (the
// intermediate first, then at least its root) and PEM key. The
// intermediate must be a CA that may sign end-entity certificates only,
// name its trust domain, match the key, and chain to a root of the file.
func ParseIntermediate(chainPEM, keyPEM []byte) (*Intermediate, error) {
	certs, err := ParsePEMCertificates(chainPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) < 2 {
		return nil, errors.New("want the intermediate followed by its root certificate")
	}
	pair, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw}), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key does not match the intermediate: %w", err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("the intermediate key cannot sign")
	}
	c := certs[0]
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 {
		return nil, errors.New("the first certificate is not an intermediate CA limited to end-entity certificates (IsCA, MaxPathLen 0)")
	}
	td := trustDomainOf(c)
	if td == "" {
		return nil, errors.New("the intermediate names no spiffe trust domain")
	}
	in := &Intermediate{TrustDomain: td, cert: c, key: key, now: time.Now}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range certs[1:] {
		if r.IsCA && bytes.Equal(r.RawIssuer, r.RawSubject) && r.CheckSignatureFrom(r) == nil {
			if rtd := trustDomainOf(r); rtd != td {
				return nil, fmt.Errorf("root %q is of trust domain %q, the intermediate of %q", r.Subject.CommonName, rtd, td)
			}
			in.roots = append(in.roots, r)
			in.rootsPEM = append(in.rootsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})...)
			pool.AddCert(r)
		} else {
			inter.AddCert(r)
		}
	}
	if len(in.roots) == 0 {
		return nil, errors.New("the chain holds no root certificate after the intermediate")
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("the intermediate does not chain to the root of its file: %w", err)
	}
	return in, nil
}

func trustDomainOf(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.Host
		}
	}
	return ""
}

// SetClock replaces the clock certificates are dated by.
func (in *Intermediate) SetClock(now func() time.Time) { in.now = now }

// Roots returns the root certificates the intermediate chains to.
func (in *Intermediate) Roots() []*x509.Certificate {
	return append([]*x509.Certificate(nil), in.roots...)
}

// RootsPEM returns the roots in PEM.
func (in *Intermediate) RootsPEM() []byte { return bytes.Clone(in.rootsPEM) }

// Certificate returns the intermediate certificate.
func (in *Intermediate) Certificate() *x509.Certificate { return in.cert }

// CSRIdentity checks a certificate request and returns the one identity
// it asks for: its signature must verify, and its only subject
// alternative name must be one SPIFFE ID of a gateway or voter (no DNS
// names, IP addresses or e-mail addresses, no other URIs). Refusals wrap
// ErrCSR.
func CSRIdentity(csr *x509.CertificateRequest) (ID, error) {
	if err := csr.CheckSignature(); err != nil {
		return ID{}, fmt.Errorf("%w: signature: %v", ErrCSR, err)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return ID{}, fmt.Errorf("%w: it names %d DNS names, IP or e-mail addresses; a strait certificate names one SPIFFE ID only", ErrCSR, n)
	}
	if len(csr.URIs) != 1 {
		return ID{}, fmt.Errorf("%w: it names %d URIs, want exactly one SPIFFE ID", ErrCSR, len(csr.URIs))
	}
	u := csr.URIs[0]
	if u.Scheme != "spiffe" {
		return ID{}, fmt.Errorf("%w: %q is not a SPIFFE ID", ErrCSR, u.String())
	}
	id, err := parseURI(u)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %v", ErrCSR, err)
	}
	if !id.IsGateway() {
		return ID{}, fmt.Errorf("%w: it asks for %s; the CA signs gateways and voters only (operators are issued offline)", ErrCSR, id)
	}
	if id.URI().String() != u.String() {
		// The earlier form spiffe://TD/region/R/cluster/C: issue the current one.
		return ID{}, fmt.Errorf("%w: %q is not in the current form %s", ErrCSR, u.String(), id)
	}
	for _, f := range []string{id.Region, id.Cluster} {
		if !isName(f) {
			return ID{}, fmt.Errorf("%w: %q in %s is not a name (lower-case letters, digits, '-', '.')", ErrCSR, f, id)
		}
	}
	if !usableKey(csr.PublicKey) {
		return ID{}, fmt.Errorf("%w: key type %T is not ECDSA (P-256, P-384), Ed25519 or RSA of 2048 bits or more", ErrCSR, csr.PublicKey)
	}
	return id, nil
}

func usableKey(k crypto.PublicKey) bool {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256() || k.Curve == elliptic.P384()
	case ed25519.PublicKey:
		return true
	case *rsa.PublicKey:
		return k.N.BitLen() >= 2048
	}
	return false
}

// SignCSR signs a certificate for the key of csr, naming want, valid
// for lifetime (DefaultLifetime when 0; never past the intermediate), and
// returns the PEM chain: the certificate, then the intermediate. The CSR
// must ask for exactly want (CSRIdentity); anything else is refused with
// ErrCSR. The certificate has an empty subject (certmagic would take a
// common name for its name), is valid from a minute before now (less
// for lifetimes under ten minutes, so that renewal at two thirds of the
// lifetime stays where it is meant to be), and serves TLS servers and
// clients.
func (in *Intermediate) SignCSR(csr *x509.CertificateRequest, want ID, lifetime time.Duration) ([]byte, error) {
	id, err := CSRIdentity(csr)
	if err != nil {
		return nil, err
	}
	if want.Role == "" {
		want.Role = RoleGateway
	}
	if id != want {
		return nil, fmt.Errorf("%w: it asks for %s, authorized for %s only", ErrCSR, id, want)
	}
	if id.TrustDomain != in.TrustDomain {
		return nil, fmt.Errorf("%w: trust domain %q, this CA signs for %q", ErrCSR, id.TrustDomain, in.TrustDomain)
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	now := in.now()
	notAfter := now.Add(lifetime)
	if notAfter.After(in.cert.NotAfter) {
		notAfter = in.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("sign %s: the intermediate expired at %s", id, in.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    now.Add(-min(maxBackdate, lifetime/10)),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, in.cert, csr.PublicKey, in.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: in.cert.Raw})...), nil
}
