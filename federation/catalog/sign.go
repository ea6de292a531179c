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
	"sync"
	"time"

	"github.com/straitmesh/strait/identity"
)

// Signed entries. Gossip is bound to its owner: a gateway's entry (header
// and public records) is accepted only when it is signed by that
// gateway's certificate key, the certificate's chain is accepted by the
// receiver's current trust (Signing.Verify: its trust domains, roots and
// revocations), and its identity (a gateway or voter) names the cluster
// and region the header claims.
//
//   - The owner signs its header together with a digest of its whole
//     public record set (live records and tombstones, sorted by key, each
//     by the SHA-256 of its canonical encoding) and the fingerprint of its
//     certificate chain: sign(SHA-256("strait catalog entry v1" || header
//     || digest || fingerprint)). One signature per change, not per record.
//   - The chain is the leaf and any intermediates, DER concatenated, leaf
//     first (x509.ParseCertificates reads it back), at most maxChainCerts
//     certificates and maxCertBytes bytes; the fingerprint is the SHA-256
//     of those bytes, so it covers every certificate. A leaf-only chain is
//     the bytes and fingerprint earlier releases sent.
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
//   - The chain travels in full copies and is cached by its fingerprint,
//     so deltas stay in one UDP packet; a receiver that does not know a
//     delta's chain asks for the whole entry. A cached chain is used only
//     while every certificate in it is valid and the trust has not
//     changed since it was verified (verifier).
//   - Certificates are short-lived and renewed: each signature is made
//     with the key Signing.Current returns then, and when the certificate
//     changes the owner signs its entry and scoped records again under a
//     new version and sends it, with the new chain, to every member
//     (Catalog.Resign, called on identity.Bundle.OnCertificate). Peers
//     keep the entry they hold until the new one verifies, so its
//     services never disappear, and an entry once accepted is not dropped
//     because its certificate expired later (a dead gateway's last entry
//     stays, for static stability).
//   - When the trust changes, the chains of the entries held are verified
//     again (at the last instant they were valid, if that is past): an
//     entry whose certificate is revoked or no longer chains to a trusted
//     root is hidden, and counted as refused (TestCatalogTrustChange).
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

// Signing is a gateway's catalog identity. It follows the gateway's
// certificate as it is renewed and the federation's trust as it rotates:
// the catalog asks Current for the key and chain each time it signs, and
// Verify for every certificate it has not verified under the current
// trust. BundleSigning builds one over an identity.Bundle.
type Signing struct {
	// Current returns the key this gateway signs with now and its
	// certificate chain (DER, leaf first, then any intermediates), whose
	// leaf's identity names this gateway's cluster and region. A nil key
	// or an empty chain means there is no certificate yet.
	Current func() (crypto.Signer, [][]byte)
	// Verify checks another gateway's chain (leaf first) at now against
	// the current trust and returns the identity it proves. It must be
	// safe for concurrent use.
	Verify func(chain []*x509.Certificate, now time.Time) (identity.ID, error)
	// Generation returns a value that changes (by ==) whenever the trust
	// behind Verify changes: the Bundle's *identity.Trust serves, since a
	// Trust is immutable and swapped whole. Verified certificates are
	// cached until it changes or they expire, and on a change the
	// certificates of the entries held are checked again. It must return
	// a comparable value. nil: cached certificates are verified again
	// every reverifyAfter, and held entries are never checked again.
	Generation func() any
	// IDOf reads the identity this gateway's own certificate claims, to
	// check it names this cluster and region before signing with it: a
	// DNS identity (an ACME certificate) is read only by a trust that
	// declares its suffix. nil: identity.Parse, spiffe URIs only.
	IDOf func(*x509.Certificate) (identity.ID, error)
}

// BundleSigning is the Signing of a gateway whose certificate and trust
// are b's. Peers' chains are verified against b's current trust for TLS
// client use, the usage a gateway's certificate is checked for when it
// dials another (a signature is not a handshake, but it is the same
// certificate and the same trust). Verification uses Trust.Verify rather
// than Bundle.Verify: it takes the catalog's clock, and a refused entry
// is counted by strait_catalog_rejected_total, not as a refused peer
// handshake.
func BundleSigning(b *identity.Bundle) *Signing {
	return &Signing{
		Current: func() (crypto.Signer, [][]byte) {
			c := b.Certificate()
			if c == nil {
				return nil, nil
			}
			k, _ := c.PrivateKey.(crypto.Signer)
			return k, c.Certificate
		},
		Verify: func(chain []*x509.Certificate, now time.Time) (identity.ID, error) {
			t := b.Trust()
			if t == nil {
				return identity.ID{}, fmt.Errorf("verify %s's catalog peer: no trust yet", b.ID)
			}
			return t.Verify(chain, x509.ExtKeyUsageClientAuth, now)
		},
		Generation: func() any { return b.Trust() },
		IDOf:       func(c *x509.Certificate) (identity.ID, error) { return b.Trust().IDOf(c) },
	}
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
	maxCertBytes  = 8192 // a leaf and an intermediate are about 1.5 KiB
	maxChainCerts = 4
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

// signingKey is one certificate of the local gateway: its key, its chain
// as the wire carries it (concatenated DER, leaf first) and the chain's
// fingerprint. It is immutable; a renewed certificate is a new one.
type signingKey struct {
	key   crypto.Signer
	chain []byte
	fp    []byte
	id    identity.ID
}

// signer signs the local gateway's entries with whatever certificate
// Signing.Current returns.
type signer struct {
	current func() (crypto.Signer, [][]byte)
	idOf    func(*x509.Certificate) (identity.ID, error)
	self    Self

	mu   sync.Mutex
	last *signingKey // the last chain Current returned, checked
}

func newSigner(s *Signing, self Self) (*signer, error) {
	if s.Current == nil || s.Verify == nil {
		return nil, errors.New("catalog signing: Current and Verify are both required")
	}
	sg := &signer{current: s.Current, idOf: s.IDOf, self: self}
	if sg.idOf == nil {
		sg.idOf = identity.Parse
	}
	if _, err := sg.key(); err != nil {
		return nil, err
	}
	return sg, nil
}

// key returns the current certificate, checked once per chain: it must be
// a gateway of our cluster and region with an ECDSA key. Asking for it on
// every signature is cheap (one comparison of the chain's bytes when it
// has not changed).
func (s *signer) key() (*signingKey, error) {
	key, chain := s.current()
	if key == nil || len(chain) == 0 {
		return nil, errors.New("catalog signing: no certificate yet")
	}
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if last != nil && sameChain(last.chain, chain) {
		return last, nil
	}
	var joined []byte
	for _, der := range chain {
		joined = append(joined, der...)
	}
	if len(chain) > maxChainCerts || len(joined) > maxCertBytes {
		return nil, fmt.Errorf("catalog signing certificate chain: %d certificates, %d bytes; at most %d and %d fit an entry",
			len(chain), len(joined), maxChainCerts, maxCertBytes)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("catalog signing certificate: %w", err)
	}
	id, err := s.idOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("catalog signing certificate: %w", err)
	}
	if !id.IsGateway() || id.Cluster != s.self.Cluster || id.Region != s.self.Region {
		return nil, fmt.Errorf("catalog signing certificate is %s; want a gateway of cluster %q in region %q",
			id, s.self.Cluster, s.self.Region)
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("catalog signing key is %T; want ECDSA", key.Public())
	}
	if !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("catalog signing key does not belong to certificate %s (serial %s)", id, identity.SerialHex(leaf))
	}
	fp := sha256.Sum256(joined)
	k := &signingKey{key: key, chain: joined, fp: fp[:], id: id}
	s.mu.Lock()
	s.last = k
	s.mu.Unlock()
	return k, nil
}

// sameChain reports whether joined is chain concatenated.
func sameChain(joined []byte, chain [][]byte) bool {
	for _, der := range chain {
		if len(der) > len(joined) || !bytes.Equal(joined[:len(der)], der) {
			return false
		}
		joined = joined[len(der):]
	}
	return len(joined) == 0
}

// signEntry sets h's digest, certificate chain and signature for set,
// signed by k (nil: unsigned).
func (k *signingKey) signEntry(h *nodeHeader, set map[string]*record) error {
	h.Digest = entryDigest(set)
	if k == nil {
		h.CertFP, h.Cert, h.Sig = nil, nil, nil
		return nil
	}
	h.CertFP, h.Cert = k.fp, k.chain
	d := signedBytes(h)
	sig, err := k.key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sign catalog entry %s: %w", h.Node, err)
	}
	h.Sig = sig
	return nil
}

func (k *signingKey) signScoped(node string, r *record) error {
	if k == nil {
		r.Sig = nil
		return nil
	}
	d := scopedBytes(node, r)
	sig, err := k.key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sign scoped record %s: %w", r.Key(), err)
	}
	r.Sig = sig
	return nil
}

// peerCert is a verified certificate chain of another gateway.
type peerCert struct {
	der      []byte // the chain as the wire carries it
	id       identity.ID
	pub      *ecdsa.PublicKey
	notAfter time.Time // the earliest expiry in the chain
	gen      any       // Signing.Generation when verified
	checked  time.Time // when verified
}

// verifier checks other gateways' entries. Its cache is guarded by the
// catalog's lock.
//
// A cached chain is used only while it is valid and the trust it was
// verified under is current: Signing.Generation is read (one atomic load
// for a Bundle) at every use and compared with the value read when the
// chain was verified, so a trust change (a rotated root, a revocation, a
// trust domain added or dropped) makes the next use of every cached
// chain go through Verify again; expiry is the cached notAfter. Without
// Generation the cache holds a chain for reverifyAfter at most.
type verifier struct {
	verify     func(chain []*x509.Certificate, now time.Time) (identity.ID, error)
	generation func() any
	certs      map[[digestLen]byte]*peerCert
}

func newVerifier(s *Signing) *verifier {
	return &verifier{verify: s.Verify, generation: s.Generation, certs: map[[digestLen]byte]*peerCert{}}
}

const (
	maxCachedCerts = 4 * 1024
	// reverifyAfter bounds how long a chain verified without a trust
	// generation to watch is trusted from the cache.
	reverifyAfter = 30 * time.Second
)

func (v *verifier) gen() any {
	if v.generation == nil {
		return nil
	}
	return v.generation()
}

// fresh reports whether pc may be used at now without verifying it again.
func (v *verifier) fresh(pc *peerCert, now time.Time) bool {
	if !now.Before(pc.notAfter) {
		return false
	}
	if v.generation == nil {
		return now.Sub(pc.checked) < reverifyAfter && !now.Before(pc.checked)
	}
	return v.gen() == pc.gen
}

// cert returns the verified chain for fp, verifying der (or the cached
// chain, after a trust change) when needed.
func (v *verifier) cert(fp []byte, der []byte, now time.Time) (*peerCert, string) {
	if len(fp) != digestLen {
		return nil, rejectUnsigned
	}
	key := [digestLen]byte(fp)
	pc, ok := v.certs[key]
	if ok && v.fresh(pc, now) {
		return pc, ""
	}
	if len(der) == 0 && ok {
		der = pc.der
	}
	if len(der) == 0 {
		return nil, rejectUnknownCert
	}
	if sha256.Sum256(der) != key {
		return nil, rejectCertificate
	}
	pc, reason := v.check(der, now)
	if reason != "" {
		delete(v.certs, key)
		return nil, reason
	}
	if len(v.certs) >= maxCachedCerts {
		clear(v.certs)
	}
	v.certs[key] = pc
	return pc, ""
}

// check parses and verifies a chain at now. It does not touch the cache,
// so it may run without the catalog's lock.
func (v *verifier) check(der []byte, now time.Time) (*peerCert, string) {
	gen := v.gen() // read first: a change during Verify makes the next use verify again
	chain, err := x509.ParseCertificates(der)
	if err != nil || len(chain) == 0 || len(chain) > maxChainCerts {
		return nil, rejectCertificate
	}
	id, err := v.verify(chain, now)
	if err != nil {
		var refused *identity.RefusedError
		if errors.As(err, &refused) {
			switch refused.Reason {
			case identity.ReasonNoIdentity, identity.ReasonUnknownTrustDomain, identity.ReasonClusterNotAllowed:
				return nil, rejectIdentity
			}
		}
		return nil, rejectCertificate
	}
	if !id.IsGateway() {
		return nil, rejectIdentity
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, rejectCertificate
	}
	notAfter := chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return &peerCert{der: der, id: id, pub: pub, notAfter: notAfter, gen: gen, checked: now}, ""
}

// recheck verifies a held entry's chain again under the current trust.
// An entry stays while its certificate is merely past its validity (a
// dead gateway's last entry is kept for static stability); it goes when
// the trust no longer accepts the chain: revoked, or no longer chaining
// to a trusted root. So the chain is checked at the last instant it was
// valid when that is before now.
func (v *verifier) recheck(der []byte, now time.Time) string {
	chain, err := x509.ParseCertificates(der)
	if err != nil || len(chain) == 0 {
		return rejectCertificate
	}
	at := now
	for _, c := range chain {
		if c.NotAfter.Before(at) {
			at = c.NotAfter
		}
	}
	_, reason := v.check(der, at)
	return reason
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
// authorized it) with the current certificate.
func (s *signer) signKeyOp(op *keyOp) error {
	if s == nil {
		return nil
	}
	k, err := s.key()
	if err != nil {
		return fmt.Errorf("sign key operation: %w", err)
	}
	op.CertFP, op.Cert = k.fp, k.chain
	d := keyOpBytes(op)
	sig, err := k.key.Sign(rand.Reader, d[:], crypto.SHA256)
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
