// Package identity issues and checks the X.509 identities that Strait
// gateways present to each other.
//
// Every gateway holds one certificate whose only URI SAN is
//
//	spiffe://<trust-domain>/region/<region>/cluster/<cluster>
//
// and which chains to the federation's trust bundle. The region and cluster
// of a peer are read from its verified certificate (Parse), never from
// anything the peer says on the wire; that is what residency checks on the
// inbound side rely on.
//
// A trust domain that declares a DNS suffix (Domain.DNSSuffix) also
// accepts certificates without a spiffe URI, as ACME directories issue
// them, whose one DNS name under the suffix is
// <cluster>.<region>.<suffix> (a gateway) or
// <cluster>.<region>.voters.<suffix> (a voter); dns.go has the table.
// Parse and the function PeerID never read DNS names: a Trust or Bundle
// does (Trust.IDOf, Bundle.PeerID), and only under a suffix one of its
// domains declares. Suffixes of two domains never nest, so a name maps to
// one domain, whose roots alone verify the chain; a certificate with a
// spiffe URI is read by its URI alone.
// TestVerifyDNSIdentity and FuzzParseDNS prove the mapping,
// TestACMEPebble the ACME source end to end.
//
// CA is an in-memory certificate authority for development and tests
// (`strait dev` creates one per run and discards it), and the offline root
// of `strait ca`. Long-lived identity management (Manager on certmagic,
// ACME, files written by cert-manager) builds on the same ID type.
//
// The federation's CA (docs/identity.md) adds these invariants:
//
//   - An Intermediate signs only what a CSR proves: exactly one SPIFFE ID
//     of a gateway or voter of its trust domain, no DNS names, IP or
//     e-mail addresses, no operators, and only the identity it was
//     authorized for; the certificate has no common name and never
//     outlives the intermediate (TestSignCSR).
//   - A join token's secret goes only to a server whose chain holds the
//     root the token pins and whose certificate is a voter's chaining to
//     it (Token.VerifyPinned, TestTokenPinsTheRoot); a token's text is
//     read or refused with ErrBadToken, never a panic, and errors never
//     repeat it (FuzzParseToken).
//   - CAIssuer hands certmagic only a certificate for the CSR's key and
//     the bundle's own identity that chains to the pinned root or the
//     bundle's trust.
package identity
