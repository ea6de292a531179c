package catalog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straitmesh/strait/identity"
)

// testPKI is a trust domain's root CA and an intermediate CA under it.
type testPKI struct {
	t        testing.TB
	td       string
	root     *x509.Certificate
	rootKey  *ecdsa.PrivateKey
	inter    *x509.Certificate
	interKey *ecdsa.PrivateKey
}

func newTestPKI(t testing.TB, td string) *testPKI {
	t.Helper()
	p := &testPKI{t: t, td: td}
	p.root, p.rootKey = p.create(&x509.Certificate{
		Subject: pkix.Name{CommonName: td + " root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{{Scheme: "spiffe", Host: td}},
	}, time.Hour, nil, nil)
	p.inter, p.interKey = p.create(&x509.Certificate{
		Subject: pkix.Name{CommonName: td + " intermediate"}, IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, time.Hour, p.root, p.rootKey)
	return p
}

// create signs tmpl with parent (self-signed when nil), valid from a
// minute ago for validity.
func (p *testPKI) create(tmpl *x509.Certificate, validity time.Duration, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(validity)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatal(err)
	}
	return cert, key
}

// issue makes a gateway certificate for region and cluster, valid for
// validity, by the intermediate (its chain is leaf, intermediate) or the
// root.
func (p *testPKI) issue(region, cluster string, validity time.Duration, viaIntermediate bool) tls.Certificate {
	p.t.Helper()
	id := identity.ID{TrustDomain: p.td, Role: identity.RoleGateway, Region: region, Cluster: cluster}
	parent, parentKey := p.root, p.rootKey
	if viaIntermediate {
		parent, parentKey = p.inter, p.interKey
	}
	leaf, key := p.create(&x509.Certificate{
		Subject: pkix.Name{CommonName: cluster + "." + region}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{id.URI()},
	}, validity, parent, parentKey)
	chain := [][]byte{leaf.Raw}
	if viaIntermediate {
		chain = append(chain, p.inter.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
}

// domain is p's trust domain as a Trust lists it.
func (p *testPKI) domain(clusters ...string) identity.Domain {
	return identity.Domain{Name: p.td, Roots: []*x509.Certificate{p.root}, Clusters: clusters}
}

func newTrust(t testing.TB, rev identity.Revocations, domains ...identity.Domain) *identity.Trust {
	t.Helper()
	tr, err := identity.NewTrust(domains, rev)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// bundle is a gateway's identity with cert, trusting tr.
func bundle(t testing.TB, cert tls.Certificate, tr *identity.Trust) *identity.Bundle {
	t.Helper()
	b, err := identity.NewBundle(cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.SetTrust(tr)
	return b
}

// startWith starts n with b's identity, wired as the gateway wires it: a
// renewed certificate re-signs the entry.
func startWith(t *testing.T, n testNode, b *identity.Bundle) *Catalog {
	t.Helper()
	n.signing, n.cluster, n.region = BundleSigning(b), b.ID.Cluster, b.ID.Region
	c := start(t, n)
	b.OnCertificate(func(*tls.Certificate) {
		if err := c.Resign(); err != nil {
			t.Errorf("%s: %v", c.Name(), err)
		}
	})
	return c
}

func chainFP(cert tls.Certificate) []byte {
	h := sha256.New()
	for _, der := range cert.Certificate {
		h.Write(der)
	}
	return h.Sum(nil)
}

// heldFP is the chain fingerprint of node's entry as c holds it, or nil.
func heldFP(c *Catalog, node string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nd := c.nodes[node]; nd != nil && nd.verified {
		return nd.CertFP
	}
	return nil
}

// waitTrustChecked waits until c has checked its held entries under its
// current trust.
func waitTrustChecked(t *testing.T, c *Catalog) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		done := c.trustGen == c.verifier.gen()
		c.mu.Unlock()
		if done {
			c.publishNow()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not check its entries under the new trust", c.Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasService(s *Snapshot, node, name string) bool {
	v := view(s, node)
	if v == nil {
		return false
	}
	for _, svc := range v.Services {
		if svc.Name == name {
			return true
		}
	}
	return false
}

// skewClock is the wall clock moved ahead by hand: timers and
// memberlist run on real time, certificate validity is judged by it.
type skewClock struct{ skew atomic.Int64 }

func (c *skewClock) Now() time.Time                     { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *skewClock) Add(d time.Duration)                { c.skew.Add(int64(d)) }
func (c *skewClock) certExpired(x tls.Certificate) bool { return c.Now().After(x.Leaf.NotAfter) }

// Gateways whose certificates come from an intermediate CA, and a second
// trust domain allowed to speak for one cluster only, are accepted; the
// chain (leaf and intermediate) is relayed to a newcomer in push/pull.
func TestCatalogAcceptsIntermediateChainsAndSecondDomains(t *testing.T) {
	home, partner := newTestPKI(t, testTrustDomain), newTestPKI(t, "partner.test")
	tr := newTrust(t, identity.Revocations{}, home.domain(), partner.domain("p"))
	a := startWith(t, testNode{name: "a", key: testKey}, bundle(t, home.issue("eu", "a", time.Hour, false), tr))
	b := startWith(t, testNode{name: "b", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("pay", 2)}},
		bundle(t, home.issue("us", "b", time.Hour, true), tr))
	p := startWith(t, testNode{name: "p", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("partner-api", 1)}},
		bundle(t, partner.issue("eu", "p", time.Hour, true), tr))
	// Cluster q is not one the partner domain may speak for.
	startWith(t, testNode{name: "q", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("intruder", 1)}},
		bundle(t, partner.issue("eu", "q", time.Hour, true), tr))
	for _, c := range []*Catalog{a, b, p} {
		waitView(t, c, "b's pay and p's partner-api", func(s *Snapshot) bool {
			return hasService(s, "b", "pay") && hasService(s, "p", "partner-api") && view(s, "a") != nil
		})
	}
	waitRejected(t, a, rejectIdentity, 1)
	if view(a.Snapshot(), "q") != nil {
		t.Fatal("a shows q, whose trust domain may not speak for cluster q")
	}
	a.mu.Lock()
	held := a.nodes["b"].Cert
	a.mu.Unlock()
	if chain, err := x509.ParseCertificates(held); err != nil || len(chain) != 2 || !chain[1].IsCA {
		t.Fatalf("a holds b's chain as %d certificates (%v); want leaf and intermediate", len(chain), err)
	}
	// A newcomer learns b's entry from push/pull with a only.
	n := startWith(t, testNode{name: "n", key: testKey, join: []string{a.GossipAddr()}},
		bundle(t, home.issue("eu", "n", time.Hour, true), tr))
	waitView(t, n, "b's pay at the newcomer", func(s *Snapshot) bool { return hasService(s, "b", "pay") })
}

// A gateway's certificate is renewed: its entry is signed again with the
// new key and chain and its peers take it without its services ever
// disappearing; after the old certificate expired its changes are still
// accepted, and a newcomer learns its entry. A gateway whose certificate
// was not renewed is refused once it expired, and its last entry kept.
func TestCatalogRenewalKeepsServices(t *testing.T) {
	pki := newTestPKI(t, testTrustDomain)
	tr := newTrust(t, identity.Revocations{}, pki.domain())
	clock := &skewClock{}
	scope := regionScope{"demo/ledger": {"us"}}
	oldCert := pki.issue("us", "b", 20*time.Second, true)
	bb := bundle(t, oldCert, tr)
	ab := bundle(t, pki.issue("eu", "a", time.Hour, true), tr)
	a := startWith(t, testNode{name: "a", key: testKey, now: clock.Now}, ab)
	b := startWith(t, testNode{name: "b", key: testKey, now: clock.Now, join: []string{a.GossipAddr()}, scope: scope,
		svcs: []Service{svc("pay", 2), svc("ledger", 1)}}, bb)
	c := startWith(t, testNode{name: "c", key: testKey, now: clock.Now, join: []string{a.GossipAddr()}},
		bundle(t, pki.issue("us", "c", time.Hour, true), tr))
	// x's certificate expires with b's old one and is never renewed.
	x := startWith(t, testNode{name: "x", key: testKey, now: clock.Now, join: []string{a.GossipAddr()}, svcs: []Service{svc("stale", 1)}},
		bundle(t, pki.issue("eu", "x", 20*time.Second, true), tr))
	waitView(t, a, "b's pay, x's stale", func(s *Snapshot) bool { return hasService(s, "b", "pay") && hasService(s, "x", "stale") })
	waitView(t, c, "b's pay and scoped ledger", func(s *Snapshot) bool { return hasService(s, "b", "pay") && hasService(s, "b", "ledger") })
	if clock.certExpired(oldCert) {
		t.Fatal("the old certificate expired before the federation converged")
	}

	// From now on, b's services must never be missing at a or c.
	var gap atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, obs := range []*Catalog{a, c} {
		ch, unwatch := obs.Watch()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unwatch()
			for {
				s := obs.Snapshot()
				if !hasService(s, "b", "pay") {
					gap.CompareAndSwap(nil, obs.Name()+" lost b's pay")
				}
				if obs == c && !hasService(s, "b", "ledger") {
					gap.CompareAndSwap(nil, "c lost b's scoped ledger")
				}
				select {
				case <-stop:
					return
				case <-ch:
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}

	b.mu.Lock()
	before := b.nodes["b"].Version
	b.mu.Unlock()
	newCert := pki.issue("us", "b", time.Hour, true)
	if err := bb.SetCertificate(newCert); err != nil {
		t.Fatal(err)
	}
	for _, obs := range []*Catalog{a, c} {
		waitView(t, obs, "b's entry signed with its new certificate", func(s *Snapshot) bool {
			v := view(s, "b")
			return v != nil && v.Version > before && string(heldFP(obs, "b")) == string(chainFP(newCert))
		})
	}

	// The old certificates expire.
	clock.Add(30 * time.Second)
	if !clock.certExpired(oldCert) {
		t.Fatal("clock not past the old certificate's expiry")
	}
	b.SetServices([]Service{svc("pay", 1), svc("ledger", 1), svc("fresh", 1)})
	for _, obs := range []*Catalog{a, c} {
		waitView(t, obs, "b's change after the old certificate expired", func(s *Snapshot) bool {
			pay, ok := view(s, "b").Service("demo", "pay")
			return hasService(s, "b", "fresh") && ok && pay.Healthy == 1
		})
	}
	// A newcomer in b's region learns b's public and scoped services.
	n := startWith(t, testNode{name: "n", key: testKey, now: clock.Now, join: []string{a.GossipAddr()}},
		bundle(t, pki.issue("us", "n", time.Hour, true), tr))
	waitView(t, n, "b's services at a newcomer", func(s *Snapshot) bool {
		return hasService(s, "b", "fresh") && hasService(s, "b", "ledger")
	})

	// x was not renewed: its change is refused, its last entry kept,
	// also when the trust changes (expiry alone does not hide an entry).
	refusedBefore := rejected(a, rejectCertificate)
	x.SetServices([]Service{svc("stale", 0)})
	waitRejected(t, a, rejectCertificate, refusedBefore+1)
	ab.SetTrust(newTrust(t, identity.Revocations{IDs: []string{"spiffe://" + testTrustDomain + "/gateway/region/eu/cluster/gone"}}, pki.domain()))
	waitTrustChecked(t, a)
	if v := view(a.Snapshot(), "x"); v == nil || v.Services[0].Healthy != 1 {
		t.Fatalf("x's last entry at a: %+v", v)
	}

	close(stop)
	wg.Wait()
	if g := gap.Load(); g != nil {
		t.Fatal(g)
	}
}

// When the trust changes, entries whose certificates it refuses go: a
// revoked certificate's gateway is hidden and its later entries
// refused; when the root rotates, gateways still on the old root are
// refused until their certificates are renewed from the new one.
func TestCatalogTrustChange(t *testing.T) {
	old, next := newTestPKI(t, testTrustDomain), newTestPKI(t, testTrustDomain)
	tr := newTrust(t, identity.Revocations{}, old.domain())
	ab := bundle(t, old.issue("eu", "a", time.Hour, true), tr)
	bCert := old.issue("us", "b", time.Hour, true)
	cb := bundle(t, old.issue("eu", "c", time.Hour, true), tr)
	a := startWith(t, testNode{name: "a", key: testKey}, ab)
	b := startWith(t, testNode{name: "b", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("pay", 2)}}, bundle(t, bCert, tr))
	c := startWith(t, testNode{name: "c", key: testKey, join: []string{a.GossipAddr()}, svcs: []Service{svc("web", 1)}}, cb)
	for _, obs := range []*Catalog{a, c} {
		waitView(t, obs, "b's pay", func(s *Snapshot) bool { return hasService(s, "b", "pay") })
	}
	waitView(t, a, "c's web", func(s *Snapshot) bool { return hasService(s, "c", "web") })

	// b's certificate is revoked at a.
	ab.SetTrust(newTrust(t, identity.Revocations{Serials: []string{identity.SerialHex(bCert.Leaf)}}, old.domain()))
	waitView(t, a, "b hidden once its certificate is revoked", func(s *Snapshot) bool { return view(s, "b") == nil })
	refused := rejected(a, rejectCertificate)
	if refused < 1 {
		t.Fatalf("hiding b counted %v refusals", refused)
	}
	b.SetServices([]Service{svc("pay", 1)})
	waitView(t, c, "b's change at c, whose trust is unchanged", func(s *Snapshot) bool {
		v := view(s, "b")
		return v != nil && v.Services[0].Healthy == 1
	})
	waitRejected(t, a, rejectCertificate, refused+1)
	if view(a.Snapshot(), "b") != nil {
		t.Fatal("a took an entry signed by a revoked certificate")
	}

	// The root rotates at a to the next CA only: c, still on the old
	// root, goes; renewed from the next CA, it is back.
	ab.SetTrust(newTrust(t, identity.Revocations{}, next.domain()))
	waitView(t, a, "c hidden after the root rotated away from its CA", func(s *Snapshot) bool { return view(s, "c") == nil })
	// c trusts both roots during the rotation, and a's renewed
	// certificate from the next CA.
	cb.SetTrust(newTrust(t, identity.Revocations{}, identity.Domain{Name: testTrustDomain, Roots: []*x509.Certificate{old.root, next.root}}))
	if err := ab.SetCertificate(next.issue("eu", "a", time.Hour, true)); err != nil {
		t.Fatal(err)
	}
	if err := cb.SetCertificate(next.issue("eu", "c", time.Hour, true)); err != nil {
		t.Fatal(err)
	}
	waitView(t, a, "c back with a certificate of the next CA", func(s *Snapshot) bool { return hasService(s, "c", "web") })
	waitView(t, c, "a's entry signed by the next CA", func(s *Snapshot) bool { return view(s, "a") != nil && string(heldFP(c, "a")) == string(heldFP(a, "a")) })
}

// The verifier's cache: a chain is verified once per trust generation
// and not used past its earliest expiry; without a generation it is
// verified again after reverifyAfter.
func TestVerifierCacheFollowsTrustAndExpiry(t *testing.T) {
	pki := newTestPKI(t, testTrustDomain)
	cert := pki.issue("eu", "a", 2*time.Hour, true) // outlives its intermediate
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, der...)
	}
	fp := sha256.Sum256(chain)
	tr := newTrust(t, identity.Revocations{}, pki.domain())
	var gen atomic.Int64
	calls := 0
	revoked := false
	verify := func(c []*x509.Certificate, now time.Time) (identity.ID, error) {
		calls++
		if revoked {
			return identity.ID{}, &identity.RefusedError{Reason: identity.ReasonRevoked, Err: errors.New("revoked")}
		}
		return tr.Verify(c, x509.ExtKeyUsageClientAuth, now)
	}
	now := time.Now()
	for _, tc := range []struct {
		name       string
		generation func() any
	}{
		{"generation", func() any { return gen.Load() }},
		{"ttl", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, revoked = 0, false
			v := newVerifier(&Signing{Verify: verify, Generation: tc.generation})
			must := func(at time.Time, der []byte, want string) {
				t.Helper()
				if _, reason := v.cert(fp[:], der, at); reason != want {
					t.Fatalf("at %s: reason %q, want %q", at.Sub(now), reason, want)
				}
			}
			must(now, chain, "")
			must(now.Add(time.Second), nil, "")
			if calls != 1 {
				t.Fatalf("%d verifications for two uses in one trust generation", calls)
			}
			revoked = true
			if tc.generation != nil {
				gen.Add(1)
				must(now.Add(time.Second), nil, rejectCertificate)
			} else {
				must(now.Add(reverifyAfter-time.Second), nil, "")
				must(now.Add(reverifyAfter+time.Second), nil, rejectCertificate)
			}
			must(now.Add(2*time.Second), nil, rejectUnknownCert) // a refused chain leaves the cache
			revoked = false
			// The intermediate, expiring before the leaf, bounds the cache.
			must(now, chain, "")
			if pc := v.certs[fp]; !pc.notAfter.Equal(pki.inter.NotAfter) {
				t.Fatalf("cached until %s; the intermediate expires at %s", pc.notAfter, pki.inter.NotAfter)
			}
			calls = 0
			must(pki.inter.NotAfter.Add(time.Second), nil, rejectCertificate)
			if calls != 1 {
				t.Fatalf("an expired chain was used from the cache (%d verifications)", calls)
			}
		})
	}
}
