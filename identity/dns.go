package identity

// The DNS form of a gateway identity, for certificate authorities that
// issue DNS names only (ACME directories: Let's Encrypt, step-ca, Vault
// PKI, Pebble). A trust domain that declares a DNS suffix
// (Domain.DNSSuffix) lets these names stand for its gateways and voters:
//
//	name                                  identity
//	<cluster>.<region>.<suffix>           spiffe://<domain>/gateway/region/<region>/cluster/<cluster>
//	<cluster>.<region>.voters.<suffix>    spiffe://<domain>/voter/region/<region>/cluster/<cluster>
//
// The number of labels in front of the suffix decides the role: two for
// a gateway, three ending in "voters" for a voter; anything else is
// malformed. Cluster and region are single DNS labels (lower-case
// letters, digits, '-'; at most 63; no '-' at either end), so no name
// reads two ways. Operators have no DNS form: an ACME CA proves control
// of a name, not who a person is.
//
// The mapping is explicit at both ends:
//
//   - Parse stays SPIFFE-only. A DNS name identifies nobody unless the
//     Trust it is read by has a domain that declares a suffix it falls
//     under (Trust.IDOf, Trust.Verify); a certificate that carries a
//     spiffe URI is read by its URI alone.
//   - A suffix belongs to one trust domain: NewTrust refuses two domains
//     whose suffixes are equal or nested, so a name maps to one domain,
//     and the chain is verified against that domain's roots only.
//   - A certificate must name exactly one DNS name under the suffix;
//     names outside it and IP addresses are ignored.
//
// Whoever can obtain a certificate from the domain's roots for a name
// under the suffix speaks for that cluster: the suffix must be a zone
// only the federation controls.

import (
	"crypto/x509"
	"fmt"
	"strings"
)

// votersLabel is the label that marks a voter's DNS name.
const votersLabel = "voters"

// maxDNSName is the longest DNS name, in its presentation form.
const maxDNSName = 253

// ParseDNS reads the identity in trust domain trustDomain from the one
// DNS name of cert under suffix (see the table at the top of dns.go). It
// does not look at spiffe URIs; Trust.IDOf decides which form applies.
// Errors wrap ErrNoIdentity and say what was wrong.
func ParseDNS(cert *x509.Certificate, suffix, trustDomain string) (ID, error) {
	suffix, err := NormalizeDNSSuffix(suffix)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %v", ErrNoIdentity, err)
	}
	if trustDomain == "" {
		return ID{}, fmt.Errorf("%w: no trust domain for DNS suffix %s", ErrNoIdentity, suffix)
	}
	var under []string
	for _, n := range cert.DNSNames {
		if l := lowerASCII(n); strings.HasSuffix(l, "."+suffix) {
			under = append(under, l)
		}
	}
	switch len(under) {
	case 0:
		return ID{}, fmt.Errorf("%w: no DNS name under %s (certificate names %s)", ErrNoIdentity, suffix, listNames(cert.DNSNames))
	case 1:
	default:
		return ID{}, fmt.Errorf("%w: %d DNS names under %s (%s), want one", ErrNoIdentity, len(under), suffix, listNames(under))
	}
	name := under[0]
	if len(name) > maxDNSName {
		return ID{}, fmt.Errorf("%w: DNS name of %d characters, longer than %d", ErrNoIdentity, len(name), maxDNSName)
	}
	labels := strings.Split(strings.TrimSuffix(name, "."+suffix), ".")
	id := ID{TrustDomain: trustDomain}
	switch {
	case len(labels) == 2:
		id.Role, id.Cluster, id.Region = RoleGateway, labels[0], labels[1]
	case len(labels) == 3 && labels[2] == votersLabel:
		id.Role, id.Cluster, id.Region = RoleVoter, labels[0], labels[1]
	default:
		return ID{}, fmt.Errorf("%w: DNS name %q is not <cluster>.<region>.%s or <cluster>.<region>.%s.%s", ErrNoIdentity, name, suffix, votersLabel, suffix)
	}
	for _, f := range []struct{ what, v string }{{"cluster", id.Cluster}, {"region", id.Region}} {
		if err := checkLabel(f.v); err != nil {
			return ID{}, fmt.Errorf("%w: DNS name %q: %s %v", ErrNoIdentity, name, f.what, err)
		}
	}
	return id, nil
}

// DNSName returns the DNS form of a gateway's or voter's identity under
// suffix. Operators have none, nor do clusters or regions whose names
// are not single DNS labels.
func (id ID) DNSName(suffix string) (string, error) {
	suffix, err := NormalizeDNSSuffix(suffix)
	if err != nil {
		return "", err
	}
	if !id.IsGateway() {
		return "", fmt.Errorf("%s: only gateways and voters have a DNS name", id)
	}
	for _, f := range []struct{ what, v string }{{"cluster", id.Cluster}, {"region", id.Region}} {
		if err := checkLabel(f.v); err != nil {
			return "", fmt.Errorf("%s has no DNS name: %s %v", id, f.what, err)
		}
	}
	name := id.Cluster + "." + id.Region + "." + suffix
	if id.Role == RoleVoter {
		name = id.Cluster + "." + id.Region + "." + votersLabel + "." + suffix
	}
	if len(name) > maxDNSName {
		return "", fmt.Errorf("%s has no DNS name: %s is longer than %d characters", id, name, maxDNSName)
	}
	return name, nil
}

// NormalizeDNSSuffix returns suffix in the form Domain.DNSSuffix keeps
// (lower case, no trailing dot), or an error saying what is wrong with
// it. A suffix has at least two labels: one alone would be a top-level
// domain.
func NormalizeDNSSuffix(suffix string) (string, error) {
	s := strings.TrimSuffix(lowerASCII(suffix), ".")
	if s == "" {
		return "", fmt.Errorf("DNS suffix %q: empty", suffix)
	}
	if len(s) > maxDNSName-4 {
		return "", fmt.Errorf("DNS suffix %q: longer than %d characters, leaves no room for a cluster and region", suffix, maxDNSName-4)
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("DNS suffix %q: want at least two labels (a zone the federation controls), not a top-level domain", suffix)
	}
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("DNS suffix %q: label %v", suffix, err)
		}
	}
	return s, nil
}

// checkLabel reports why s is not a DNS label of a Strait name: lower-case
// letters, digits and '-', 1 to 63 of them, no '-' at either end.
func checkLabel(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("is empty")
	case len(s) > 63:
		return fmt.Errorf("%.20q... is longer than 63 characters", s)
	case s[0] == '-' || s[len(s)-1] == '-':
		return fmt.Errorf("%q starts or ends with '-'", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%q holds %q (want lower-case letters, digits, '-')", s, c)
		}
	}
	return nil
}

// lowerASCII lowers ASCII letters only: DNS names compare case-blind in
// ASCII, and Unicode case folding would read the Kelvin sign as 'k'.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// listNames lists up to three names for a message.
func listNames(names []string) string {
	switch {
	case len(names) == 0:
		return "no DNS names"
	case len(names) <= 3:
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// suffixesOverlap reports whether a and b (normalized) are equal or one
// lies under the other, so that one name could fall under both.
func suffixesOverlap(a, b string) bool {
	return a == b || strings.HasSuffix(a, "."+b) || strings.HasSuffix(b, "."+a)
}

// hasSPIFFE reports whether cert carries any spiffe URI, well-formed or
// not; such a certificate is read by Parse alone.
func hasSPIFFE(cert *x509.Certificate) bool {
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			return true
		}
	}
	return false
}
