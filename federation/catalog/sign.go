package catalog

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/straitmesh/strait/identity"
)

// Signed entries. Gossip is bound to its owner: a gateway's entry (header
// and public records) is accepted only when it is signed by that
// gateway's certificate key, the certificate chains to the federation's
// roots, and its identity (a gateway or voter of the trust domain) names
// the cluster and region the header claims.
//
//   - The owner signs its header together with a digest of its whole
//     public record set (live records and tombstones, sorted by key, each
//     by the SHA-256 of its canonical encoding) and the fingerprint of its
//     certificate: sign(SHA-256("strait catalog entry v1" || header ||
//     digest || fingerprint)). One signature per change, not per record.
//   - A delta carries the new signed header and only the changed records;
//     the receiver applies them to its copy and accepts the result only if
//     its digest is the signed one. A receiver that missed a change holds
//     the old entry and asks the owner for its whole entry (kindWant);
//     push/pull repairs it too. Full copies (push/pull, a newcomer's
//     hand-over) are checked the same way, so a relayer cannot add, drop
//     or alter a record of someone else's entry.
//   - Records restricted to some regions (scoped) are not in the digest:
//     they travel only directly from their owner and each carries its own
//     signature over the node name and the record.
//   - The certificate travels in full copies and is cached by its
//     SHA-256 fingerprint, so deltas stay in one UDP packet; a receiver
//     that does not know a delta's certificate asks for the whole entry.
//   - A node name is bound to the cluster of the first verified entry for
//     it: another cluster's certificate cannot take it over (an HA pair of
//     one cluster shares the trust of that cluster).
//   - Versions are compared, never subtracted, and raised with satAdd: a
//     version never wraps to 0. A forged high version is impossible since
//     the version is signed; an owner that reaches MaxUint64 stays there.
//
// Without Options.Signing (tests, development) entries carry no signature
// and are accepted by catalogs that have none either; the digest checks
// still run, so the merge path is the same.

// Signing is a gateway's catalog identity: the key and certificate it
// signs its entry with, and the roots and trust domain it verifies others
// by.
type Signing struct {
	// Key is the private key of Cert (ECDSA P-256 for Strait's CA).
	Key crypto.Signer
	// Cert is the DER leaf certificate whose identity names this
	// gateway's cluster and region.
	Cert []byte
	// Roots are the federation's trust roots.
	Roots *x509.CertPool
	// TrustDomain is the federation's trust domain; other domains are
	// refused.
	TrustDomain string
	// Trust, when set, replaces Roots and TrustDomain for others'
	// certificates: each is verified by the trust it returns (every
	// trusted domain, within the clusters a domain may speak for, its
	// revocations), and verified again once it returns another, so that
	// the catalog follows trust records and revocations as handshakes do.
	// Optional.
	Trust func() *identity.Trust
}

// Reasons an entry or record is refused (label of
// strait_catalog_rejected_total).
const (
	rejectUnsigned     = "unsigned"
	rejectCertificate  = "bad_certificate"
	rejectUnknownCert  = "unknown_certificate"
	rejectIdentity     = "identity_mismatch"
	rejectSignature    = "bad_signature"
	rejectNodeCluster  = "node_cluster"
	rejectInconsistent = "inconsistent"
)

var rejectReasons = []string{rejectUnsigned, rejectCertificate, rejectUnknownCert, rejectIdentity, rejectSignature, rejectNodeCluster, rejectInconsistent}

const (
	entryContext  = "strait catalog entry v1\x00"
	keyOpContext  = "strait gossip key operation v1\x00"
	scopedContext = "strait catalog scoped record v1\x00"
	maxCertBytes  = 4096
	maxSigBytes   = 128
	digestLen     = sha256.Size
)

// satAdd returns a+b, or MaxUint64 when that would wrap.
func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// recordHash is the SHA-256 of r's canonical encoding, cached on r. The
// cache is only touched with the catalog's lock held or before r is shared.
func (r *record) recordHash() [digestLen]byte {
	if !r.hashed {
		var b bytes.Buffer
		(&writer{w: &b}).recordBody(r)
		r.hash, r.hashed = sha256.Sum256(b.Bytes()), true
	}
	return r.hash
}

// entryDigest is the digest of a public record set, in key order.
func entryDigest(set map[string]*record) [digestLen]byte {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		rh := set[k].recordHash()
		h.Write(rh[:])
	}
	var d [digestLen]byte
	h.Sum(d[:0])
	return d
}

// signedBytes is what an entry's signature covers.
func signedBytes(h *nodeHeader) [digestLen]byte {
	var b bytes.Buffer
	b.WriteString(entryContext)
	w := &writer{w: &b}
	w.headerFields(h)
	b.Write(h.Digest[:])
	w.bytes(h.CertFP)
	return sha256.Sum256(b.Bytes())
}

func scopedBytes(node string, r *record) [digestLen]byte {
	var b bytes.Buffer
	b.WriteString(scopedContext)
	w := &writer{w: &b}
	w.str(node)
	w.recordBody(r)
	return sha256.Sum256(b.Bytes())
}

// signer signs the local gateway's entries.
type signer struct {
	key  crypto.Signer
	cert []byte
	fp   []byte
}

func newSigner(s *Signing, self Self) (*signer, error) {
	if s.Key == nil || len(s.Cert) == 0 || s.Roots == nil || s.TrustDomain == "" {
		return nil, errors.New("catalog signing: key, certificate, roots and trust domain are all required")
	}
	leaf, err := x509.ParseCertificate(s.Cert)
	if err != nil {
		return nil, fmt.Errorf("catalog signing certificate: %w", err)
	}
	id, err := identity.Parse(leaf)
	if err != nil {
		return nil, fmt.Errorf("catalog signing certificate: %w", err)
	}
	if !id.IsGateway() || id.Cluster != self.Cluster || id.Region != self.Region || id.TrustDomain != s.TrustDomain {
		return nil, fmt.Errorf("catalog signing certificate is %s; want a gateway of cluster %q in region %q of trust domain %q",
			id, self.Cluster, self.Region, s.TrustDomain)
	}
	if _, ok := s.Key.Public().(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("catalog signing key is %T; want ECDSA", s.Key.Public())
	}
	fp := sha256.Sum256(s.Cert)
	return &signer{key: s.Key, cert: s.Cert, fp: fp[:]}, nil
}

// signEntry sets h's digest, certificate and signature for set.
func (s *signer) signEntry(h *nodeHeader, set map[string]*record) error {
	h.Digest = entryDigest(set)
	if s == nil {
		h.CertFP, h.Cert, h.Sig = nil, nil, nil
		return nil
	}
	h.CertFP, h.Cert = s.fp, s.cert
	d := signedBytes(h)
	sig, err := s.key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sign catalog entry %s: %w", h.Node, err)
	}
	h.Sig = sig
	return nil
}

func (s *signer) signScoped(node string, r *record) error {
	if s == nil {
		r.Sig = nil
		return nil
	}
	d := scopedBytes(node, r)
	sig, err := s.key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sign scoped record %s: %w", r.Key(), err)
	}
	r.Sig = sig
	return nil
}

// peerCert is a verified certificate of another gateway.
type peerCert struct {
	der      []byte
	id       identity.ID
	pub      *ecdsa.PublicKey
	notAfter time.Time
	under    *identity.Trust // the trust it was verified by (Signing.Trust)
}

// verifier checks other gateways' entries. Its cache is guarded by the
// catalog's lock.
type verifier struct {
	roots       *x509.CertPool
	trustDomain string
	trust       func() *identity.Trust // nil: roots and trustDomain
	certs       map[[digestLen]byte]*peerCert
}

const maxCachedCerts = 4 * 1024

// cert returns the verified certificate for fp, verifying der when given.
func (v *verifier) cert(fp []byte, der []byte, now time.Time) (*peerCert, string) {
	if len(fp) != digestLen {
		return nil, rejectUnsigned
	}
	key := [digestLen]byte(fp)
	var trust *identity.Trust
	if v.trust != nil {
		trust = v.trust()
	}
	if pc, ok := v.certs[key]; ok {
		if now.Before(pc.notAfter) && pc.under == trust {
			return pc, ""
		}
		if len(der) == 0 {
			der = pc.der // verify it again by the trust in force now
		}
		delete(v.certs, key)
	}
	if len(der) == 0 {
		return nil, rejectUnknownCert
	}
	if sha256.Sum256(der) != key {
		return nil, rejectCertificate
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, rejectCertificate
	}
	var id identity.ID
	if trust != nil {
		// A gateway's certificate is its client certificate too.
		if id, err = trust.Verify([]*x509.Certificate{leaf}, x509.ExtKeyUsageClientAuth, now); err != nil {
			return nil, rejectCertificate
		}
		if !id.IsGateway() {
			return nil, rejectIdentity
		}
	} else {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, rejectCertificate
		}
		id, err = identity.Parse(leaf)
		if err != nil || id.TrustDomain != v.trustDomain || !id.IsGateway() {
			return nil, rejectIdentity
		}
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, rejectCertificate
	}
	if len(v.certs) >= maxCachedCerts {
		clear(v.certs)
	}
	pc := &peerCert{der: der, id: id, pub: pub, notAfter: leaf.NotAfter, under: trust}
	v.certs[key] = pc
	return pc, ""
}

// verifyEntry checks h's signature and that its certificate's identity
// owns the cluster and region h claims. The digest is checked by the
// caller against the records.
func (v *verifier) verifyEntry(h *nodeHeader, now time.Time) string {
	if v == nil {
		return ""
	}
	d := signedBytes(h)
	pc, reason := v.owner(h, h.Sig, d[:], now)
	if reason == "" {
		h.Cert = pc.der // relayed in full copies
	}
	return reason
}

// owner checks that sig, by the certificate h names, signs d, and that
// the certificate's identity is h's cluster and region.
func (v *verifier) owner(h *nodeHeader, sig, d []byte, now time.Time) (*peerCert, string) {
	if len(sig) == 0 {
		return nil, rejectUnsigned
	}
	pc, reason := v.cert(h.CertFP, h.Cert, now)
	if reason != "" {
		return nil, reason
	}
	if pc.id.Cluster != h.Cluster || pc.id.Region != h.Region {
		return nil, rejectIdentity
	}
	if !ecdsa.VerifyASN1(pc.pub, d, sig) {
		return nil, rejectSignature
	}
	return pc, ""
}

// verifyScoped checks a scoped record's own signature by the
// certificate of h, which must name h's cluster and region.
func (v *verifier) verifyScoped(h *nodeHeader, r *record, now time.Time) string {
	if v == nil {
		return ""
	}
	d := scopedBytes(h.Node, r)
	_, reason := v.owner(h, r.Sig, d[:], now)
	return reason
}

// newSignerID returns the identity of s's certificate.
func newSignerID(s *Signing) (identity.ID, error) {
	leaf, err := x509.ParseCertificate(s.Cert)
	if err != nil {
		return identity.ID{}, err
	}
	return identity.Parse(leaf)
}

func keyOpBytes(op *keyOp) [digestLen]byte {
	var b bytes.Buffer
	b.WriteString(keyOpContext)
	w := &writer{w: &b}
	w.str(op.ID)
	w.str(op.From)
	w.byte(op.Op)
	w.bytes(op.Key)
	w.bytes(op.CertFP)
	return sha256.Sum256(b.Bytes())
}

// signKeyOp signs a key operation this gateway starts (its admin API
// authorized it).
func (s *signer) signKeyOp(op *keyOp) error {
	if s == nil {
		return nil
	}
	op.CertFP, op.Cert = s.fp, s.cert
	d := keyOpBytes(op)
	sig, err := s.key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sign key operation: %w", err)
	}
	op.Sig = sig
	return nil
}

// verifyKeyOp checks that a key operation was started by a gateway of
// the federation: holding the gossip key is not enough to change it.
func (v *verifier) verifyKeyOp(op *keyOp, now time.Time) string {
	if v == nil {
		return ""
	}
	if len(op.Sig) == 0 {
		return rejectUnsigned
	}
	pc, reason := v.cert(op.CertFP, op.Cert, now)
	if reason != "" {
		return reason
	}
	d := keyOpBytes(op)
	if !ecdsa.VerifyASN1(pc.pub, d[:], op.Sig) {
		return rejectSignature
	}
	return ""
}
