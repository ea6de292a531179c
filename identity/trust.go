package identity

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reason says why a peer certificate was refused (the label of
// strait_identity_peer_refused_total).
type Reason string

// Reasons a peer certificate is refused.
const (
	ReasonNoCertificate      Reason = "no_certificate"
	ReasonMalformed          Reason = "malformed"
	ReasonExpired            Reason = "expired"
	ReasonNotYetValid        Reason = "not_yet_valid"
	ReasonSelfSigned         Reason = "self_signed"
	ReasonWrongKeyUsage      Reason = "wrong_key_usage"
	ReasonNoIdentity         Reason = "no_identity"
	ReasonUnknownTrustDomain Reason = "unknown_trust_domain"
	ReasonClusterNotAllowed  Reason = "cluster_not_allowed"
	ReasonUnknownAuthority   Reason = "unknown_authority"
	ReasonRevoked            Reason = "revoked"
	// ReasonDNSNotDeclared is a certificate without a spiffe URI whose
	// DNS names fall under no DNS suffix a trusted domain declares.
	ReasonDNSNotDeclared Reason = "dns_name_not_declared"
)

// Reasons lists every Reason, for metrics that start at zero.
var Reasons = []Reason{ReasonNoCertificate, ReasonMalformed, ReasonExpired, ReasonNotYetValid, ReasonSelfSigned, ReasonWrongKeyUsage,
	ReasonNoIdentity, ReasonUnknownTrustDomain, ReasonClusterNotAllowed, ReasonUnknownAuthority, ReasonRevoked, ReasonDNSNotDeclared}

// RefusedError is a refused peer certificate: why, and whose it was as far
// as it could be read (a SPIFFE ID, or the subject's common name).
type RefusedError struct {
	Reason  Reason
	Subject string
	Serial  string
	Err     error
}

func (e *RefusedError) Error() string {
	s := "peer certificate refused (" + string(e.Reason) + ")"
	if e.Subject != "" {
		s += ": " + e.Subject
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Domain is one trust domain a gateway accepts: its roots and, for a
// domain other than the federation's own, the clusters it may speak for.
type Domain struct {
	// Name is the trust domain, the host part of its SPIFFE IDs.
	Name string
	// Roots are its CA certificates. During a CA rotation both the old
	// and the new CA are here.
	Roots []*x509.Certificate
	// Clusters, when not empty, are the only clusters whose gateways this
	// domain may identify; its operators are never accepted. The
	// federation's own domain has none.
	Clusters []string
	// DNSSuffix, when set, lets certificates without a spiffe URI identify
	// this domain's gateways and voters by DNS name under it (dns.go has
	// the form), as ACME directories issue them. No two domains of a
	// Trust have equal or nested suffixes. Default none: DNS names
	// identify nobody.
	DNSSuffix string
	// ServerAuthAsClient accepts a DNS identity's certificate as a TLS
	// client certificate although its extended key usage allows server
	// authentication only, as Let's Encrypt and Pebble issue them. Only
	// with DNSSuffix; default false (such a client is refused as
	// wrong_key_usage).
	ServerAuthAsClient bool
	pool               *x509.CertPool
}

// Revocations are refused at every handshake although their chains are
// valid: certificate serials (hex, any case) and SPIFFE IDs.
type Revocations struct {
	Serials []string
	IDs     []string
}

// Trust is what a gateway verifies peers by: the trust domains it accepts
// and the certificates revoked in them. A Trust is immutable; a Bundle
// swaps it whole.
type Trust struct {
	domains map[string]*Domain
	serials map[string]bool
	ids     map[string]bool
}

// NewTrust builds a Trust. Each domain needs a name and at least one root.
func NewTrust(domains []Domain, rev Revocations) (*Trust, error) {
	t := &Trust{domains: map[string]*Domain{}, serials: map[string]bool{}, ids: map[string]bool{}}
	for _, d := range domains {
		if d.Name == "" || strings.ContainsAny(d.Name, "/: ") {
			return nil, fmt.Errorf("trust domain %q: not a trust domain name", d.Name)
		}
		if len(d.Roots) == 0 {
			return nil, fmt.Errorf("trust domain %s: no root certificates", d.Name)
		}
		if _, dup := t.domains[d.Name]; dup {
			return nil, fmt.Errorf("trust domain %s: listed twice", d.Name)
		}
		if d.DNSSuffix != "" {
			s, err := NormalizeDNSSuffix(d.DNSSuffix)
			if err != nil {
				return nil, fmt.Errorf("trust domain %s: %w", d.Name, err)
			}
			d.DNSSuffix = s
			for _, o := range t.domains {
				if o.DNSSuffix != "" && suffixesOverlap(s, o.DNSSuffix) {
					return nil, fmt.Errorf("trust domain %s: DNS suffix %s overlaps %s of trust domain %s; a name must map to one domain", d.Name, s, o.DNSSuffix, o.Name)
				}
			}
		} else if d.ServerAuthAsClient {
			return nil, fmt.Errorf("trust domain %s: serverAuthAsClient applies to DNS identities only and needs a DNS suffix", d.Name)
		}
		d.pool = x509.NewCertPool()
		for _, r := range d.Roots {
			d.pool.AddCert(r)
		}
		d.Roots, d.Clusters = slices.Clone(d.Roots), slices.Clone(d.Clusters)
		t.domains[d.Name] = &d
	}
	for _, s := range rev.Serials {
		n := strings.ToLower(strings.TrimPrefix(strings.ReplaceAll(s, ":", ""), "0x"))
		if _, err := hex.DecodeString(pad(n)); err != nil || n == "" {
			return nil, fmt.Errorf("revoked serial %q: not hexadecimal", s)
		}
		t.serials[strings.TrimLeft(n, "0")] = true
	}
	for _, id := range rev.IDs {
		if !strings.HasPrefix(id, "spiffe://") {
			return nil, fmt.Errorf("revoked identity %q: not a spiffe id", id)
		}
		t.ids[id] = true
	}
	return t, nil
}

func pad(s string) string {
	if len(s)%2 == 1 {
		return "0" + s
	}
	return s
}

// SerialHex is a certificate serial as Revocations and logs spell it.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// Domains returns the trust domains, sorted by name.
func (t *Trust) Domains() []Domain {
	out := make([]Domain, 0, len(t.domains))
	for _, d := range t.domains {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Domain) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Domain returns the named trust domain.
func (t *Trust) Domain(name string) (Domain, bool) {
	d, ok := t.domains[name]
	if !ok {
		return Domain{}, false
	}
	return *d, true
}

// Revoked returns the number of revoked serials and identities.
func (t *Trust) Revoked() (serials, ids int) { return len(t.serials), len(t.ids) }

// Verify checks a peer's certificate chain (leaf first, as sent) for use
// as usage at now and returns the identity it proves. A refusal is a
// *RefusedError naming the reason.
func (t *Trust) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (ID, error) {
	if len(chain) == 0 {
		return ID{}, &RefusedError{Reason: ReasonNoCertificate, Err: errors.New("peer sent no certificate")}
	}
	leaf := chain[0]
	refuse := func(r Reason, err error) (ID, error) {
		subj := leaf.Subject.CommonName
		if subj == "" && len(leaf.DNSNames) > 0 {
			subj = listNames(leaf.DNSNames)
		}
		for _, u := range leaf.URIs {
			if u.Scheme == "spiffe" {
				subj = u.String()
			}
		}
		return ID{}, &RefusedError{Reason: r, Subject: subj, Serial: SerialHex(leaf), Err: err}
	}
	// CheckSignature, not CheckSignatureFrom: the latter refuses a parent
	// that is not a CA, so it never matches a self-signed leaf.
	if leaf.IsCA || (bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil) {
		return refuse(ReasonSelfSigned, errors.New("a self-signed or CA certificate is not a gateway's"))
	}
	if now.Before(leaf.NotBefore) {
		return refuse(ReasonNotYetValid, fmt.Errorf("valid from %s", leaf.NotBefore.UTC().Format(time.RFC3339)))
	}
	if now.After(leaf.NotAfter) {
		return refuse(ReasonExpired, fmt.Errorf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	if !usableFor(leaf, usage) {
		if !t.serverAuthAsClient(leaf, usage) {
			// A DNS name no trusted domain declares is the reason to
			// give, whatever the usages (an ACME client certificate
			// under another suffix is server-only too).
			if _, err := t.IDOf(leaf); errors.Is(err, ErrDNSNotDeclared) {
				return refuse(ReasonDNSNotDeclared, err)
			}
			return refuse(ReasonWrongKeyUsage, fmt.Errorf("extended key usage %v does not allow %s", leaf.ExtKeyUsage, usageName(usage)))
		}
		usage = x509.ExtKeyUsageServerAuth
	}
	id, err := t.IDOf(leaf)
	if err != nil {
		if errors.Is(err, ErrDNSNotDeclared) {
			return refuse(ReasonDNSNotDeclared, err)
		}
		return refuse(ReasonNoIdentity, err)
	}
	d, ok := t.domains[id.TrustDomain]
	if !ok {
		return refuse(ReasonUnknownTrustDomain, fmt.Errorf("trust domain %q is not trusted", id.TrustDomain))
	}
	if len(d.Clusters) > 0 && (!id.IsGateway() || !slices.Contains(d.Clusters, id.Cluster)) {
		return refuse(ReasonClusterNotAllowed, fmt.Errorf("trust domain %s may only identify the gateways of %s", d.Name, strings.Join(d.Clusters, ", ")))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: d.pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		var inv x509.CertificateInvalidError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			return refuse(ReasonExpired, err)
		case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
			return refuse(ReasonWrongKeyUsage, err)
		}
		return refuse(ReasonUnknownAuthority, fmt.Errorf("does not chain to trust domain %s: %w", d.Name, err))
	}
	if t.ids[id.String()] {
		return refuse(ReasonRevoked, fmt.Errorf("identity %s is revoked", id))
	}
	for _, c := range chains[0] {
		if t.serials[SerialHex(c)] {
			return refuse(ReasonRevoked, fmt.Errorf("certificate serial %s (%s) is revoked", SerialHex(c), c.Subject.CommonName))
		}
	}
	return id, nil
}

func usableFor(c *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return false
	}
	if len(c.ExtKeyUsage) == 0 {
		return len(c.UnknownExtKeyUsage) == 0
	}
	return slices.Contains(c.ExtKeyUsage, usage) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "TLS client authentication"
	case x509.ExtKeyUsageServerAuth:
		return "TLS server authentication"
	}
	return fmt.Sprintf("usage %d", u)
}

// ErrDNSNotDeclared reports a certificate identified by DNS names only,
// none under a DNS suffix that a trusted domain declares.
var ErrDNSNotDeclared = errors.New("no trusted domain declares a DNS suffix for its DNS names")

// IDOf reads the identity a certificate claims, as t reads it, without
// verifying anything else: a certificate with a spiffe URI by Parse; one
// without by its DNS name under the suffix of the one domain that
// declares a suffix it falls under (ParseDNS). A nil Trust reads spiffe
// URIs only.
func (t *Trust) IDOf(cert *x509.Certificate) (ID, error) {
	if t == nil || hasSPIFFE(cert) || len(cert.DNSNames) == 0 {
		return Parse(cert)
	}
	var match, declared []string
	for _, d := range t.Domains() {
		if d.DNSSuffix == "" {
			continue
		}
		declared = append(declared, d.DNSSuffix)
		for _, n := range cert.DNSNames {
			if strings.HasSuffix(lowerASCII(n), "."+d.DNSSuffix) {
				match = append(match, d.Name)
				break
			}
		}
	}
	switch len(match) {
	case 0:
		if len(declared) == 0 {
			declared = []string{"none"}
		}
		return ID{}, fmt.Errorf("%w: %w: %s (declared suffixes: %s)", ErrNoIdentity, ErrDNSNotDeclared,
			listNames(cert.DNSNames), strings.Join(declared, ", "))
	case 1:
		d := t.domains[match[0]]
		return ParseDNS(cert, d.DNSSuffix, d.Name)
	}
	return ID{}, fmt.Errorf("%w: certificate names DNS names under the suffixes of trust domains %s, want one", ErrNoIdentity, strings.Join(match, ", "))
}

// serverAuthAsClient reports whether leaf, offered as a client
// certificate but usable for server authentication only, is a DNS
// identity of a domain that accepts such clients.
func (t *Trust) serverAuthAsClient(leaf *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if usage != x509.ExtKeyUsageClientAuth || hasSPIFFE(leaf) || !usableFor(leaf, x509.ExtKeyUsageServerAuth) {
		return false
	}
	id, err := t.IDOf(leaf)
	if err != nil {
		return false
	}
	d, ok := t.domains[id.TrustDomain]
	return ok && d.ServerAuthAsClient
}
