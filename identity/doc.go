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
// (`strait dev` creates one per run and discards it). Long-lived identity
// management (certmagic, ACME, files written by cert-manager) builds on the
// same ID type.
package identity
