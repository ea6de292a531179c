package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Role is what an identity may do in the federation.
type Role string

// Roles. A gateway speaks for its own cluster and region: it carries
// traffic, gossips its catalog entry and follows the routing state. A
// voter is a gateway that may also vote in the routing state's Raft
// group. An operator changes the routing state (policies, failover,
// exports, trust) and gossip keys; it never carries traffic.
const (
	RoleGateway  Role = "gateway"
	RoleVoter    Role = "voter"
	RoleOperator Role = "operator"
)

// ID is a verified identity: a gateway or voter (the cluster it fronts and
// the region it sits in) or an operator (a name and, optionally, the
// record kinds it may write).
type ID struct {
	TrustDomain string
	Role        Role // "" reads as RoleGateway
	Region      string
	Cluster     string
	// Name and Scope are an operator's: Scope lists the record kinds it
	// may write, comma-separated; empty means every kind.
	Name  string
	Scope string
}

// URI returns the SPIFFE ID of id:
//
//	spiffe://TD/gateway/region/R/cluster/C
//	spiffe://TD/voter/region/R/cluster/C
//	spiffe://TD/operator/NAME[/scope/KIND,KIND]
func (id ID) URI() *url.URL {
	var path string
	switch id.Role {
	case RoleOperator:
		path = "/operator/" + id.Name
		if id.Scope != "" {
			path += "/scope/" + id.Scope
		}
	case RoleVoter:
		path = "/voter/region/" + id.Region + "/cluster/" + id.Cluster
	default:
		path = "/gateway/region/" + id.Region + "/cluster/" + id.Cluster
	}
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: path}
}

func (id ID) String() string { return id.URI().String() }

// IsGateway reports whether id speaks for a cluster (a gateway or voter).
func (id ID) IsGateway() bool { return id.Role == RoleGateway || id.Role == RoleVoter || id.Role == "" }

// MayWrite reports whether id is an operator allowed to write records of
// kind.
func (id ID) MayWrite(kind string) bool {
	if id.Role != RoleOperator {
		return false
	}
	if id.Scope == "" {
		return true
	}
	for _, k := range strings.Split(id.Scope, ",") {
		if k == kind {
			return true
		}
	}
	return false
}

// ErrNoIdentity reports a certificate without a Strait SPIFFE ID.
var ErrNoIdentity = errors.New("certificate carries no strait identity")

// Parse reads the identity from a certificate. It expects exactly one
// spiffe URI SAN in one of the forms of ID.URI; the form of earlier
// releases, spiffe://TD/region/R/cluster/C, reads as a gateway (never a
// voter or operator).
func Parse(cert *x509.Certificate) (ID, error) {
	var found []ID
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := parseURI(u)
		if err != nil {
			return ID{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return ID{}, ErrNoIdentity
	case 1:
		return found[0], nil
	default:
		return ID{}, fmt.Errorf("%w: %d spiffe ids, want one", ErrNoIdentity, len(found))
	}
}

// isName reports whether s may name a region, cluster, operator or kind.
func isName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return s != ""
}

func parseURI(u *url.URL) (ID, error) {
	bad := fmt.Errorf("%w: malformed spiffe id %q", ErrNoIdentity, u.String())
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	for _, p := range parts {
		if p == "" {
			return ID{}, bad
		}
	}
	id := ID{TrustDomain: u.Host}
	switch {
	case len(parts) == 4 && parts[0] == "region" && parts[2] == "cluster":
		id.Role, id.Region, id.Cluster = RoleGateway, parts[1], parts[3]
	case len(parts) == 5 && (parts[0] == "gateway" || parts[0] == "voter") && parts[1] == "region" && parts[3] == "cluster":
		id.Role, id.Region, id.Cluster = Role(parts[0]), parts[2], parts[4]
	case len(parts) == 2 && parts[0] == "operator":
		id.Role, id.Name = RoleOperator, parts[1]
	case len(parts) == 4 && parts[0] == "operator" && parts[2] == "scope":
		id.Role, id.Name, id.Scope = RoleOperator, parts[1], parts[3]
	default:
		return ID{}, bad
	}
	return id, nil
}

// CA is an in-memory certificate authority for one trust domain.
type CA struct {
	TrustDomain string
	cert        *x509.Certificate
	key         *ecdsa.PrivateKey
	certPEM     []byte
}

// NewCA creates a self-signed CA valid for validity from now.
func NewCA(trustDomain string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "strait federation CA " + trustDomain},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{
		TrustDomain: trustDomain,
		cert:        cert,
		key:         key,
		certPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// SaveCA writes the CA certificate and its private key (mode 0600) to
// certFile and keyFile.
func (ca *CA) SaveCA(certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("encode CA key: %w", err)
	}
	if err := os.WriteFile(certFile, ca.certPEM, 0o644); err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("write CA key: %w", err)
	}
	return nil
}

// LoadCA reads a CA written by SaveCA.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA %s, %s: %w", certFile, keyFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate %s: %w", certFile, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("%s is not a strait CA (want an ECDSA CA certificate)", certFile)
	}
	td := ""
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			td = u.Host
		}
	}
	if td == "" {
		return nil, fmt.Errorf("%s: CA certificate names no spiffe trust domain", certFile)
	}
	return &CA{TrustDomain: td, cert: cert, key: key, certPEM: certPEM}, nil
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Roots returns the CA certificate, as the roots of a Bundle or Trust.
func (ca *CA) Roots() []*x509.Certificate { return []*x509.Certificate{ca.cert} }

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Issue signs a gateway certificate for region and cluster, usable as both
// TLS server and client certificate, valid for validity from now.
func (ca *CA) Issue(region, cluster string, validity time.Duration) (tls.Certificate, error) {
	return ca.IssueID(ID{Role: RoleGateway, Region: region, Cluster: cluster}, validity)
}

// IssueID signs a certificate for id (its trust domain is the CA's).
func (ca *CA) IssueID(id ID, validity time.Duration) (tls.Certificate, error) {
	certPEM, keyPEM, err := ca.IssueIDPEM(id, validity)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// IssuePEM is Issue with PEM-encoded output, for writing to files.
func (ca *CA) IssuePEM(region, cluster string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return ca.IssueIDPEM(ID{Role: RoleGateway, Region: region, Cluster: cluster}, validity)
}

// IssueIDPEM is IssueID with PEM-encoded output.
func (ca *CA) IssueIDPEM(id ID, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	id.TrustDomain = ca.TrustDomain
	if _, err := parseURI(id.URI()); err != nil {
		return nil, nil, fmt.Errorf("issue certificate: %w", err)
	}
	for _, f := range []string{id.Region, id.Cluster, id.Name, strings.ReplaceAll(id.Scope, ",", "")} {
		if f != "" && !isName(f) {
			return nil, nil, fmt.Errorf("issue certificate for %s: %q is not a name (lower-case letters, digits, '-', '.')", id, f)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %s: %w", id, err)
	}
	cn := id.Cluster + "." + id.Region
	if id.Role == RoleOperator {
		cn = "operator " + id.Name
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key for %s: %w", id, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// WriteFiles issues a gateway certificate for region and cluster and
// writes cert.pem, key.pem and ca.pem into dir (created if missing, key
// mode 0600).
func (ca *CA) WriteFiles(dir, region, cluster string, validity time.Duration) error {
	return ca.WriteIDFiles(dir, ID{Role: RoleGateway, Region: region, Cluster: cluster}, validity)
}

// WriteIDFiles is WriteFiles for any identity.
func (ca *CA) WriteIDFiles(dir string, id ID, validity time.Duration) error {
	certPEM, keyPEM, err := ca.IssueIDPEM(id, validity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": ca.certPEM} {
		mode := os.FileMode(0o644)
		if name == "key.pem" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
		}
	}
	return nil
}

// Bundle is what a gateway needs for mTLS: its own certificate, which a
// certificate manager (Manager) replaces as it renews, and the trust it
// verifies peers by, which the routing state replaces as trust records and
// revocations change. Every handshake reads both afresh, so a new
// certificate or trust takes effect on the next handshake while open
// connections keep working.
type Bundle struct {
	// ID is the identity every certificate of this bundle carries.
	ID ID

	cert    atomic.Pointer[tls.Certificate]
	trust   atomic.Pointer[Trust]
	refused atomic.Pointer[func(*RefusedError)]

	mu       sync.Mutex
	watchers []func(*tls.Certificate)
}

// NewBundle checks that cert carries a strait identity and builds a bundle
// that trusts roots for the certificate's own trust domain.
func NewBundle(cert tls.Certificate, roots []*x509.Certificate) (*Bundle, error) {
	leaf, err := leafOf(&cert)
	if err != nil {
		return nil, err
	}
	id, err := Parse(leaf)
	if err != nil {
		return nil, err
	}
	b := &Bundle{ID: id}
	b.cert.Store(&cert)
	if len(roots) > 0 {
		t, err := NewTrust([]Domain{{Name: id.TrustDomain, Roots: roots}}, Revocations{})
		if err != nil {
			return nil, err
		}
		b.trust.Store(t)
	}
	return b, nil
}

// NewBundleFor is a bundle for id that has no certificate yet (a Manager
// obtains one) and trusts t.
func NewBundleFor(id ID, t *Trust) *Bundle {
	b := &Bundle{ID: id}
	if t != nil {
		b.trust.Store(t)
	}
	return b
}

func leafOf(cert *tls.Certificate) (*x509.Certificate, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	cert.Leaf = leaf
	return leaf, nil
}

// LoadFiles reads a PEM certificate (with its chain), its key and a CA
// bundle from files.
func LoadFiles(certFile, keyFile, caFile string) (*Bundle, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
	}
	roots, err := ReadRoots(caFile)
	if err != nil {
		return nil, err
	}
	b, err := NewBundle(cert, nil)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	t, err := NewTrust([]Domain{{Name: b.ID.TrustDomain, Roots: roots}}, Revocations{})
	if err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", caFile, err)
	}
	b.trust.Store(t)
	return b, nil
}

// ReadRoots reads the PEM CA certificates of file.
func ReadRoots(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	roots, err := ParsePEMCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", file, err)
	}
	return roots, nil
}

// ParsePEMCertificates parses PEM CERTIFICATE blocks; anything else, or
// none at all, is an error.
func ParsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(out)+1, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificates found")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("trailing data after certificate %d", len(out))
	}
	return out, nil
}

// Certificate returns the current certificate (nil until a Manager has
// obtained the first).
func (b *Bundle) Certificate() *tls.Certificate { return b.cert.Load() }

// SetCertificate makes cert the one presented from the next handshake on.
// It must carry the bundle's identity: as a spiffe URI, or as a DNS name
// under the suffix the bundle's trust domain declares in its current
// trust (Trust.IDOf).
func (b *Bundle) SetCertificate(cert tls.Certificate) error {
	leaf, err := leafOf(&cert)
	if err != nil {
		return err
	}
	id, err := b.trust.Load().IDOf(leaf)
	if err != nil {
		return err
	}
	if id != b.ID {
		return fmt.Errorf("certificate names %s, want %s", id, b.ID)
	}
	if _, ok := cert.PrivateKey.(crypto.Signer); !ok {
		return fmt.Errorf("certificate for %s has no usable private key", id)
	}
	b.mu.Lock()
	b.cert.Store(&cert)
	ws := slices.Clone(b.watchers)
	b.mu.Unlock()
	for _, w := range ws {
		w(&cert)
	}
	return nil
}

// OnCertificate calls f with every certificate set after this call.
func (b *Bundle) OnCertificate(f func(*tls.Certificate)) {
	b.mu.Lock()
	b.watchers = append(b.watchers, f)
	b.mu.Unlock()
}

// Trust returns the current trust (nil until set).
func (b *Bundle) Trust() *Trust { return b.trust.Load() }

// SetTrust makes t what peers are verified by from the next handshake on.
func (b *Bundle) SetTrust(t *Trust) { b.trust.Store(t) }

// Roots returns a pool of the bundle's own trust domain's roots.
func (b *Bundle) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	if t := b.trust.Load(); t != nil {
		if d, ok := t.Domain(b.ID.TrustDomain); ok {
			for _, r := range d.Roots {
				p.AddCert(r)
			}
		}
	}
	return p
}

// OnRefused calls f with every peer certificate this bundle refuses.
func (b *Bundle) OnRefused(f func(*RefusedError)) { b.refused.Store(&f) }

// Verify checks a peer's chain against the current trust for usage.
func (b *Bundle) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (ID, error) {
	t := b.trust.Load()
	if t == nil {
		t = &Trust{}
	}
	id, err := t.Verify(chain, usage, time.Now())
	if err != nil {
		var r *RefusedError
		if errors.As(err, &r) {
			if f := b.refused.Load(); f != nil {
				(*f)(r)
			}
		}
	}
	return id, err
}

func (b *Bundle) getCertificate() (*tls.Certificate, error) {
	if c := b.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%s: no certificate yet", b.ID)
}

// ServerConfig returns a TLS config for a listener that requires a client
// certificate and verifies it against the current trust at every
// handshake, resumed ones included.
func (b *Bundle) ServerConfig() *tls.Config {
	return b.serverConfig(tls.RequireAnyClientCert)
}

// ServerConfigClientOptional is ServerConfig for a listener that also
// takes clients without a certificate (enrolment with a join token);
// a certificate that is given is verified as ServerConfig does.
func (b *Bundle) ServerConfigClientOptional() *tls.Config {
	return b.serverConfig(tls.RequestClientCert)
}

func (b *Bundle) serverConfig(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return b.getCertificate() },
		ClientAuth:     auth,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 && auth == tls.RequestClientCert {
				return nil
			}
			_, err := b.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
			return err
		},
	}
}

// ClientConfig returns a TLS config for dialling another gateway with the
// given SNI; the server's certificate is verified against the current
// trust at every handshake.
func (b *Bundle) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return b.getCertificate() },
		ServerName:           serverName,
		// Gateways are named by SPIFFE ID, not DNS name: VerifyConnection
		// verifies the chain and the identity.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := b.Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			return err
		},
	}
}

// PeerID returns the identity of the verified peer of a TLS connection.
// It reads spiffe URIs only; (*Bundle).PeerID also reads DNS identities.
func PeerID(cs tls.ConnectionState) (ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return ID{}, ErrNoIdentity
	}
	return Parse(cs.PeerCertificates[0])
}

// PeerID returns the identity of the peer of a TLS connection that one of
// the bundle's configs verified, read as the bundle's current trust reads
// it (Trust.IDOf): a spiffe URI, or a DNS name under a declared suffix.
// It does not verify the chain again; the handshake did.
func (b *Bundle) PeerID(cs tls.ConnectionState) (ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return ID{}, ErrNoIdentity
	}
	return b.trust.Load().IDOf(cs.PeerCertificates[0])
}

// DNSName returns the DNS form of the bundle's identity under the suffix
// its trust domain declares in the current trust: the name an ACME
// directory issues its certificates for.
func (b *Bundle) DNSName() (string, error) {
	t := b.trust.Load()
	if t == nil {
		return "", fmt.Errorf("%s: no trust, so no DNS suffix", b.ID)
	}
	d, ok := t.Domain(b.ID.TrustDomain)
	if !ok || d.DNSSuffix == "" {
		return "", fmt.Errorf("%s: trust domain %s declares no DNS suffix", b.ID, b.ID.TrustDomain)
	}
	return b.ID.DNSName(d.DNSSuffix)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

// Signer returns the current certificate's private key as a
// crypto.Signer (what signs this gateway's catalog entries), or nil if
// there is none.
func (b *Bundle) Signer() crypto.Signer {
	c := b.cert.Load()
	if c == nil {
		return nil
	}
	s, _ := c.PrivateKey.(crypto.Signer)
	return s
}
