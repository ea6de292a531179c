package state

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"

	"github.com/straitmesh/strait/identity"
)

// Trust and revocation records.
//
// A trust record (KindTrust), keyed by a trust domain, holds the roots
// gateways verify that domain's certificates by. Its payload is either
// PEM certificates (the domain is trusted for every identity it names),
// or a JSON object, strictly parsed:
//
//	{"roots": "<PEM certificates>", "clusters": ["eu-west-2", "eu-west-3"]}
//
// where clusters, when not empty, are the only clusters whose gateways
// that domain may identify; its operators are never accepted. The
// federation's own domain (Options.TrustDomain) is never limited to
// clusters, its record is never deleted (only replaced), and a new
// version must keep a root that verifies the certificate of the gateway
// taking the write: a typing mistake cannot make the federation distrust
// its own gateways. Without an own-domain record every gateway trusts
// its own domain by its tls.ca file alone; with one, by the record.
//
// A revocation record (KindRevocation) refuses one certificate serial or
// one SPIFFE ID at every handshake, whatever its chain: {"serial": "HEX"}
// or {"id": "spiffe://..."}, with an optional "reason". It is keyed by
// what it revokes (RevocationKey), so revoking twice writes one record.

// KindRevocation is one revoked certificate serial or SPIFFE ID, keyed by
// RevocationKey.
const KindRevocation = "revocation"

// TrustBundle is the payload of a trust record.
type TrustBundle struct {
	// Roots are the domain's CA certificates.
	Roots []*x509.Certificate
	// Clusters, when not empty, are the only clusters the domain may
	// speak for.
	Clusters []string
}

// trustJSON is the JSON form of a trust record.
type trustJSON struct {
	Roots    string   `json:"roots"`
	Clusters []string `json:"clusters"`
}

// ParseTrust reads the payload of a trust record, PEM or JSON.
func ParseTrust(payload []byte) (TrustBundle, error) {
	trimmed := bytes.TrimSpace(payload)
	if !bytes.HasPrefix(trimmed, []byte("{")) {
		roots, err := parseRoots(payload)
		if err != nil {
			return TrustBundle{}, fmt.Errorf("%w: trust: %v", ErrInvalid, err)
		}
		return TrustBundle{Roots: roots}, nil
	}
	var j trustJSON
	if err := strictJSON(trimmed, &j); err != nil {
		return TrustBundle{}, fmt.Errorf("%w: trust: %v (want {\"roots\": \"<PEM>\", \"clusters\": [...]})", ErrInvalid, err)
	}
	if strings.TrimSpace(j.Roots) == "" {
		return TrustBundle{}, fmt.Errorf("%w: trust: roots: missing or empty, want PEM CA certificates", ErrInvalid)
	}
	roots, err := parseRoots([]byte(j.Roots))
	if err != nil {
		return TrustBundle{}, fmt.Errorf("%w: trust: roots: %v", ErrInvalid, err)
	}
	if err := labels("trust: clusters", j.Clusters); err != nil {
		return TrustBundle{}, err
	}
	return TrustBundle{Roots: roots, Clusters: j.Clusters}, nil
}

func parseRoots(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(out)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(out)+1, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA certificate", len(out)+1, c.Subject.CommonName)
		}
		out = append(out, c)
	}
	if len(out) == 0 || len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("want PEM certificates of CAs only (found %d, then %d bytes of something else)", len(out), len(bytes.TrimSpace(rest)))
	}
	return out, nil
}

// Encode returns the payload of b: plain PEM when it names no clusters,
// the JSON form otherwise.
func (b TrustBundle) Encode() string {
	var pemBuf bytes.Buffer
	for _, c := range b.Roots {
		_ = pem.Encode(&pemBuf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if len(b.Clusters) == 0 {
		return pemBuf.String()
	}
	out, _ := json.Marshal(trustJSON{Roots: pemBuf.String(), Clusters: b.Clusters})
	return string(out)
}

// Revocation is the payload of a revocation record: exactly one of Serial
// and ID.
type Revocation struct {
	// Serial is a certificate serial in lower-case hexadecimal without
	// leading zeros (identity.SerialHex).
	Serial string `json:"serial,omitempty"`
	// ID is a SPIFFE ID in its canonical form (identity.ID.String).
	ID string `json:"id,omitempty"`
	// Reason says why, for people.
	Reason string `json:"reason,omitempty"`
}

const maxReasonLen = 512

var (
	serialRE        = regexp.MustCompile(`^[0-9a-f]{1,128}$`)
	revocationKeyRE = regexp.MustCompile(`^(serial-[0-9a-f]{1,128}|id-[0-9a-f]{32})$`)
)

// CanonicalSerial returns a serial as revocations spell it: lower-case
// hexadecimal, no colons, no 0x, no leading zeros.
func CanonicalSerial(s string) (string, error) {
	n := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(strings.ReplaceAll(strings.TrimSpace(s), ":", ""), "0x"), "0X"))
	if n = strings.TrimLeft(n, "0"); n == "" {
		n = "0"
	}
	if !serialRE.MatchString(n) {
		return "", fmt.Errorf("serial %q: want hexadecimal digits (colons allowed), at most 128", s)
	}
	return n, nil
}

// ParseRevocation reads and checks the payload of a revocation record.
func ParseRevocation(payload []byte) (Revocation, error) {
	var r Revocation
	if err := strictJSON(payload, &r); err != nil {
		return r, fmt.Errorf("%w: revocation: %v (want {\"serial\": \"HEX\"} or {\"id\": \"spiffe://...\"})", ErrInvalid, err)
	}
	switch {
	case r.Serial == "" && r.ID == "":
		return r, fmt.Errorf("%w: revocation: neither serial nor id is set", ErrInvalid)
	case r.Serial != "" && r.ID != "":
		return r, fmt.Errorf("%w: revocation: serial and id are both set; one record revokes one of them", ErrInvalid)
	case r.Serial != "":
		if c, err := CanonicalSerial(r.Serial); err != nil || c != r.Serial {
			return r, fmt.Errorf("%w: revocation: serial %q: want lower-case hexadecimal without leading zeros or colons", ErrInvalid, r.Serial)
		}
	default:
		id, err := identity.ParseID(r.ID)
		if err != nil {
			return r, fmt.Errorf("%w: revocation: id: %v", ErrInvalid, err)
		}
		if id.String() != r.ID {
			return r, fmt.Errorf("%w: revocation: id %q: write it as %q", ErrInvalid, r.ID, id.String())
		}
	}
	if len(r.Reason) > maxReasonLen {
		return r, fmt.Errorf("%w: revocation: reason is %d bytes, limit %d", ErrInvalid, len(r.Reason), maxReasonLen)
	}
	return r, nil
}

// RevocationKey is the key of the record that revokes r's serial or ID.
func RevocationKey(r Revocation) string {
	if r.Serial != "" {
		return "serial-" + r.Serial
	}
	sum := sha256.Sum256([]byte(r.ID))
	return "id-" + hex.EncodeToString(sum[:16])
}

// checkRecordPair checks what only a key and its payload together tell: a
// revocation is keyed by what it revokes.
func checkRecordPair(kind, key string, payload []byte) error {
	if kind != KindRevocation {
		return nil
	}
	r, err := ParseRevocation(payload)
	if err != nil {
		return err
	}
	if want := RevocationKey(r); key != want {
		return fmt.Errorf("%w: revocation key %q does not match its payload: want %q", ErrInvalid, key, want)
	}
	return nil
}

// checkOwnTrust keeps a change of the federation's own trust record from
// leaving its gateways unable to verify each other: the record is never
// deleted, never limited to clusters, and a new version keeps a root that
// verifies the certificate of this gateway (the one taking the write).
func (s *Store) checkOwnTrust(req *WriteRequest) error {
	own := s.opts.TrustDomain
	if req.Kind != KindTrust || req.Key != own {
		return nil
	}
	switch req.Op {
	case OpDelete:
		return fmt.Errorf("%w: trust %s is the federation's own trust domain: its record is replaced, never deleted "+
			"(gateways would fall back to their tls.ca files, which may hold a CA rotated away); remove one CA with "+
			"'strait ca trust remove --domain %s --ca FILE'", ErrInvalid, own, own)
	case OpPut:
	default:
		return nil
	}
	b, err := ParseTrust([]byte(req.Value))
	if err != nil {
		return err
	}
	if len(b.Clusters) > 0 {
		return fmt.Errorf("%w: trust %s: clusters: the federation's own trust domain speaks for every cluster; only another domain is limited to some", ErrInvalid, own)
	}
	if s.opts.Identity == nil {
		return nil
	}
	cert := s.opts.Identity.Certificate()
	if cert == nil || len(cert.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("trust %s: parse this gateway's certificate: %w", own, err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range b.Roots {
		roots.AddCert(r)
	}
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: trust %s: none of its %d roots verifies the certificate of gateway %s (serial %s, issued by %q): "+
			"the federation would stop trusting its own gateways; re-issue their certificates from a CA the record keeps first",
			ErrInvalid, own, len(b.Roots), s.opts.Identity.ID, identity.SerialHex(leaf), leaf.Issuer.CommonName)
	}
	return nil
}
