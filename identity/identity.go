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
	"strings"
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

// Bundle is what a gateway needs for mTLS: its own certificate and the
// federation's trust roots.
type Bundle struct {
	Cert  tls.Certificate
	Roots *x509.CertPool
	ID    ID
}

// NewBundle checks that cert carries a strait identity and builds a bundle.
func NewBundle(cert tls.Certificate, roots *x509.CertPool) (*Bundle, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	id, err := Parse(leaf)
	if err != nil {
		return nil, err
	}
	cert.Leaf = leaf
	return &Bundle{Cert: cert, Roots: roots, ID: id}, nil
}

// LoadFiles reads a PEM certificate, its key and a CA bundle from files.
func LoadFiles(certFile, keyFile, caFile string) (*Bundle, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificates found", caFile)
	}
	b, err := NewBundle(cert, roots)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	return b, nil
}

// ServerConfig returns a TLS config for a listener that accepts only
// clients holding a certificate from the same trust domain.
func (b *Bundle) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    b.Roots,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			return b.checkPeer(chains)
		},
	}
}

// ClientConfig returns a TLS config for dialling another gateway with the
// given SNI; the server must hold a certificate from the same trust domain.
func (b *Bundle) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.Cert},
		RootCAs:      b.Roots,
		ServerName:   serverName,
		// Gateways are named by SPIFFE ID, not DNS name: verify the chain
		// ourselves and then the trust domain.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, 0, len(raw))
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return fmt.Errorf("parse peer certificate: %w", err)
				}
				certs = append(certs, c)
			}
			if len(certs) == 0 {
				return errors.New("peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			chains, err := certs[0].Verify(x509.VerifyOptions{
				Roots:         b.Roots,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("verify peer certificate: %w", err)
			}
			return b.checkPeer(chains)
		},
	}
}

func (b *Bundle) checkPeer(chains [][]*x509.Certificate) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("no verified chain")
	}
	id, err := Parse(chains[0][0])
	if err != nil {
		return err
	}
	if id.TrustDomain != b.ID.TrustDomain {
		return fmt.Errorf("peer trust domain %q, want %q", id.TrustDomain, b.ID.TrustDomain)
	}
	return nil
}

// PeerID returns the identity of the verified peer of a TLS connection.
func PeerID(cs tls.ConnectionState) (ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return ID{}, ErrNoIdentity
	}
	return Parse(cs.PeerCertificates[0])
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

// Signer returns the bundle's private key as a crypto.Signer (what signs
// this gateway's catalog entries), or nil if the key cannot sign.
func (b *Bundle) Signer() crypto.Signer {
	s, _ := b.Cert.PrivateKey.(crypto.Signer)
	return s
}
