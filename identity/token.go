package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A join token lets a new gateway obtain its first certificate from the
// federation's CA. Its text is
//
//	sjt1.<id>.<secret>.<root>
//
//	sjt1    the format
//	id      16 lower-case hex digits: the key of its jointoken record
//	secret  64 lower-case hex digits (256 random bits); the routing state
//	        keeps only its SHA-256 (SecretHash)
//	root    64 lower-case hex digits: the SHA-256 of the DER of the
//	        federation's root certificate (RootHash), which the new
//	        gateway, holding no trust yet, pins the CA server by
//
// The secret travels only inside a TLS connection to a server whose
// chain holds the pinned root and whose certificate is a voter's of that
// root's trust domain (VerifyPinned), so a man in the middle never sees
// it. What a token allows (cluster, region, role), how long it lives and
// that it is used once are kept and decided by the routing state.

// tokenPrefix names the format of a token.
const tokenPrefix = "sjt1"

// ErrBadToken is wrapped by every token that cannot be read.
var ErrBadToken = errors.New("malformed join token")

// Token is a join token.
type Token struct {
	ID       string // 16 hex digits
	Secret   string // 64 hex digits
	RootHash string // 64 hex digits: SHA-256 of the root certificate's DER
}

// NewToken makes a token with a fresh ID and secret that pins root.
func NewToken(root *x509.Certificate) (Token, error) {
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("token id: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return Token{}, fmt.Errorf("token secret: %w", err)
	}
	sum := sha256.Sum256(root.Raw)
	return Token{ID: hex.EncodeToString(id[:]), Secret: hex.EncodeToString(secret[:]), RootHash: hex.EncodeToString(sum[:])}, nil
}

// String returns the token's text.
func (t Token) String() string {
	return tokenPrefix + "." + t.ID + "." + t.Secret + "." + t.RootHash
}

// SecretHash is what the routing state keeps of the secret:
// "sha256:" and 64 hex digits.
func (t Token) SecretHash() string {
	sum := sha256.Sum256([]byte(t.Secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// RootHash returns the SHA-256 of a certificate's DER as "sha256:<hex>",
// as `strait ca token` prints the root it pins.
func RootHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseToken reads a token's text; surrounding white space (a token
// file's newline) is ignored. Errors wrap ErrBadToken and never repeat
// the text, which may hold a secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: want %s.<id>.<secret>.<root hash>, found %d dot-separated parts", ErrBadToken, tokenPrefix, len(parts))
	}
	if parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("%w: format %q, want %s", ErrBadToken, clip(parts[0]), tokenPrefix)
	}
	for _, p := range []struct {
		what string
		v    string
		n    int
	}{{"id", parts[1], 16}, {"secret", parts[2], 64}, {"root hash", parts[3], 64}} {
		if len(p.v) != p.n || !isLowerHex(p.v) {
			return Token{}, fmt.Errorf("%w: the %s is %d characters, want %d lower-case hex digits", ErrBadToken, p.what, len(p.v), p.n)
		}
	}
	return Token{ID: parts[1], Secret: parts[2], RootHash: parts[3]}, nil
}

// IsTokenID reports whether s has the form of a token ID.
func IsTokenID(s string) bool { return len(s) == 16 && isLowerHex(s) }

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 8 {
		return s[:8] + "…"
	}
	return s
}

// PinnedRoot returns the certificate of chain whose SHA-256 is the
// token's root hash: a self-signed CA naming a trust domain.
func (t Token) PinnedRoot(chain []*x509.Certificate) (*x509.Certificate, error) {
	want, err := hex.DecodeString(t.RootHash)
	if err != nil {
		return nil, fmt.Errorf("%w: root hash: %v", ErrBadToken, err)
	}
	for _, c := range chain {
		sum := sha256.Sum256(c.Raw)
		if !bytes.Equal(sum[:], want) {
			continue
		}
		if !c.IsCA || !bytes.Equal(c.RawIssuer, c.RawSubject) || c.CheckSignatureFrom(c) != nil || trustDomainOf(c) == "" {
			return nil, fmt.Errorf("the certificate with the pinned hash sha256:%s is not a self-signed CA of a trust domain", t.RootHash)
		}
		return c, nil
	}
	return nil, fmt.Errorf("the server presented no certificate with the pinned root hash sha256:%s: it is not a CA server of the federation the token is for", t.RootHash)
}

// VerifyPinned checks a CA server's chain (leaf first, as sent) when the
// client holds no trust yet: one certificate of the chain must be the
// pinned root, and the leaf must be a voter's certificate of its trust
// domain that chains to it. It returns the voter and the root.
func (t Token) VerifyPinned(chain []*x509.Certificate, now time.Time) (ID, *x509.Certificate, error) {
	if len(chain) == 0 {
		return ID{}, nil, errors.New("the server presented no certificate")
	}
	root, err := t.PinnedRoot(chain)
	if err != nil {
		return ID{}, nil, err
	}
	trust, err := NewTrust([]Domain{{Name: trustDomainOf(root), Roots: []*x509.Certificate{root}}}, Revocations{})
	if err != nil {
		return ID{}, nil, err
	}
	id, err := trust.Verify(chain, x509.ExtKeyUsageServerAuth, now)
	if err != nil {
		return ID{}, nil, fmt.Errorf("CA server: %w", err)
	}
	if id.Role != RoleVoter {
		return ID{}, nil, fmt.Errorf("CA server %s is not a voter: a join token goes to voters only", id)
	}
	return id, root, nil
}

// EnrolmentClientConfig is a TLS config for dialling a CA server with t
// and no client certificate: the server is verified by VerifyPinned.
func (t Token) EnrolmentClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: "control.strait",
		// No certificate to present yet: the join token authorizes.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil },
		// The server is named by SPIFFE ID and verified against the
		// pinned root in VerifyConnection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, _, err := t.VerifyPinned(cs.PeerCertificates, time.Now())
			return err
		},
	}
}

// EnrolmentServerConfig is ServerConfigClientOptional for a listener
// that serves certificate requests: it takes clients without a
// certificate (a join token authorizes them) and presents the bundle's
// certificate followed by the roots of its own trust domain, so that a
// client holding only a token's root hash can verify it.
func (b *Bundle) EnrolmentServerConfig() *tls.Config {
	cfg := b.ServerConfigClientOptional()
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := b.getCertificate()
		if err != nil {
			return nil, err
		}
		t := b.trust.Load()
		if t == nil {
			return c, nil
		}
		d, ok := t.Domain(b.ID.TrustDomain)
		if !ok {
			return c, nil
		}
		out := *c
		out.Certificate = append(append([][]byte(nil), c.Certificate...), rawOf(d.Roots)...)
		return &out, nil
	}
	return cfg
}

func rawOf(cs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Raw
	}
	return out
}
