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
// CA is an in-memory certificate authority for development and tests
// (`strait dev` creates one per run and discards it). Long-lived identity
// management (certmagic, ACME, files written by cert-manager) builds on the
// same ID type.
package identity
