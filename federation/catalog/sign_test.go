package catalog

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/fakeclock"
)

const testTrustDomain = "strait.test"

// testCA issues catalog identities of one federation.
type testCA struct {
	t  testing.TB
	ca *identity.CA
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := identity.NewCA(testTrustDomain, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{t: t, ca: ca}
}

// signing is a catalog identity over a Bundle with a fresh certificate
// for region and cluster, as a gateway's.
func (c *testCA) signing(region, cluster string) *Signing {
	c.t.Helper()
	cert, err := c.ca.Issue(region, cluster, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	b, err := identity.NewBundle(cert, c.ca.Roots())
	if err != nil {
		c.t.Fatal(err)
	}
	return BundleSigning(b)
}

func rejected(c *Catalog, reason string) float64 {
	return testutil.ToFloat64(c.metrics.rejected.WithLabelValues(reason))
}

// waitRejected waits until c has refused at least n entries for reason.
func waitRejected(t *testing.T, c *Catalog, reason string, n float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rejected(c, reason) < n {
		if time.Now().After(deadline) {
			for _, r := range rejectReasons {
				t.Logf("%s refused %v as %s", c.Name(), rejected(c, r), r)
			}
			t.Fatalf("%s: %v entries refused as %s, want %v", c.Name(), rejected(c, reason), reason, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forge builds a whole entry for hdr with recs, signed by s's current
// certificate (s need not own the entry).
func forge(t testing.TB, s *signer, hdr nodeHeader, recs ...*record) *wireNode {
	t.Helper()
	set := map[string]*record{}
	for _, r := range recs {
		set[r.Key()] = r
	}
	hdr.Full = true
	k, err := s.key()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.signEntry(&hdr, set); err != nil {
		t.Fatal(err)
	}
	return &wireNode{nodeHeader: hdr, Records: recs}
}

// sendFrom delivers wn from one member to another over real gossip.
func sendFrom(t *testing.T, from, to *Catalog, wn *wireNode) {
	t.Helper()
	for _, m := range from.ml.Members() {
		if m.Name == to.Name() {
			if err := from.ml.SendReliable(m, encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{wn}})); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%s is not a member seen by %s", to.Name(), from.Name())
}

// A member holding the gossip key and a valid certificate of cluster x
// cannot take over cluster y's entry: not by claiming y's cluster and
// region, not by claiming y's node name for its own cluster, not by
// replaying y's signed entry with a higher version, not unsigned.
func TestSignedGossipRefusesForgedEntries(t *testing.T) {
	ca := newTestCA(t)
	a := start(t, testNode{name: "a", region: "eu", key: testKey, signing: ca.signing("eu", "a")})
	y := start(t, testNode{name: "y", region: "us", key: testKey, signing: ca.signing("us", "y"), join: []string{a.GossipAddr()}, svcs: []Service{svc("pay", 2)}})
	x := start(t, testNode{name: "x", region: "eu", key: testKey, signing: ca.signing("eu", "x"), join: []string{a.GossipAddr()}})
	for _, c := range []*Catalog{a, y, x} {
		waitView(t, c, "all three, y with pay", func(s *Snapshot) bool {
			v := view(s, "y")
			return view(s, "a") != nil && view(s, "x") != nil && v != nil && v.Reachable && len(v.Services) == 1
		})
	}
	a.mu.Lock()
	genuine := a.nodes["y"].nodeHeader
	genuineRecs := []*record{a.nodes["y"].public["demo/pay"]}
	a.mu.Unlock()
	evil := &record{Service: svc("pay", 9), Version: math.MaxUint64}
	evil.Total = 9

	// x signs an entry claiming y's cluster, another region and gateway.
	hdr := genuine
	hdr.Region, hdr.Gateway, hdr.Version = "eu", "10.6.6.6:15443", math.MaxUint64
	claimY := forge(t, x.signer, hdr, evil)
	// x claims y's node name for its own cluster.
	hdr = genuine
	hdr.Cluster, hdr.Region, hdr.Gateway, hdr.Version = "x", "eu", "10.6.6.6:15443", math.MaxUint64
	takeName := forge(t, x.signer, hdr, evil)
	// x replays y's genuine signed entry with a higher version.
	replay := whole(genuine, genuineRecs...)
	replay.CertFP, replay.Cert, replay.Sig = genuine.CertFP, genuine.Cert, genuine.Sig
	replay.Version = genuine.Version + 1000
	// x's own record added to y's genuine entry.
	stuffed := whole(genuine, append(genuineRecs, evil)...)
	stuffed.CertFP, stuffed.Cert, stuffed.Sig, stuffed.Digest = genuine.CertFP, genuine.Cert, genuine.Sig, genuine.Digest
	stuffed.Version = genuine.Version + 1
	// No signature at all.
	hdr = genuine
	hdr.Version, hdr.Gateway = math.MaxUint64, "10.6.6.6:15443"
	unsigned := whole(hdr, evil)
	unsigned.CertFP, unsigned.Cert, unsigned.Sig = nil, nil, nil

	for _, to := range []*Catalog{a, y} {
		for _, wn := range []*wireNode{claimY, takeName, replay, stuffed, unsigned} {
			sendFrom(t, x, to, wn)
		}
	}
	for _, to := range []*Catalog{a, y} {
		waitRejected(t, to, rejectIdentity, 1)
		waitRejected(t, to, rejectSignature, 1)
		waitRejected(t, to, rejectUnsigned, 1)
		waitRejected(t, to, rejectInconsistent, 1)
	}
	waitRejected(t, a, rejectNodeCluster, 1)
	// y treats claims on its own name from another cluster as such too.
	waitRejected(t, y, rejectNodeCluster, 1)

	v := view(a.Snapshot(), "y")
	if v == nil || v.Cluster != "y" || v.Region != "us" || v.Gateway != "127.0.0.1:1" || v.Version >= math.MaxUint64-1 || v.Services[0].Healthy != 2 {
		t.Fatalf("y's entry at a after forgeries: %+v", v)
	}
	y.mu.Lock()
	own := y.nodes["y"].nodeHeader
	y.mu.Unlock()
	if own.Version != genuine.Version || own.Region != "us" {
		t.Fatalf("y's own entry moved: version %d -> %d, region %s", genuine.Version, own.Version, own.Region)
	}

	// The honest owner's next change still goes everywhere.
	y.SetServices([]Service{svc("pay", 1)})
	for _, c := range []*Catalog{a, x} {
		waitView(t, c, "y's change", func(s *Snapshot) bool {
			v := view(s, "y")
			return v != nil && v.Services[0].Healthy == 1 && v.Region == "us"
		})
	}
}

func TestSigningRefusesAForeignIdentity(t *testing.T) {
	ca := newTestCA(t)
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Bind, cfg.Insecure = "a", "127.0.0.1:0", true
	_, err := New(cfg, Self{Cluster: "a", Region: "eu"}, nil, Options{Logger: slog.New(slog.DiscardHandler), Signing: ca.signing("eu", "b")})
	if err == nil {
		t.Fatal("catalog of cluster a started with cluster b's certificate")
	}
}

func TestVersionsSaturate(t *testing.T) {
	for _, tc := range []struct{ a, b, want uint64 }{
		{1, 1, 2},
		{math.MaxUint64 - 1, 1, math.MaxUint64},
		{math.MaxUint64, 1, math.MaxUint64},
		{math.MaxUint64, math.MaxUint64, math.MaxUint64},
	} {
		if got := satAdd(tc.a, tc.b); got != tc.want {
			t.Errorf("satAdd(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	// Our own signed entry comes back at the top of the range (from a
	// previous incarnation, say): versions stay at MaxUint64, never wrap.
	ca := newTestCA(t)
	a := start(t, testNode{name: "a", region: "eu", key: testKey, signing: ca.signing("eu", "a"), svcs: []Service{svc("mine", 1)}})
	a.mu.Lock()
	hdr := a.nodes["a"].nodeHeader
	a.mu.Unlock()
	hdr.Version = math.MaxUint64 - 1
	top := &record{Service: svc("mine", 0), Version: math.MaxUint64}
	a.merge([]*wireNode{forge(t, a.signer, hdr, top)}, false)
	check := func(when string) {
		t.Helper()
		a.mu.Lock()
		defer a.mu.Unlock()
		own := a.nodes["a"]
		if own.Version != math.MaxUint64 || own.public["demo/mine"].Version != math.MaxUint64 || a.lastVer != math.MaxUint64 {
			t.Fatalf("%s: header %d, record %d, last %d; want MaxUint64", when, own.Version, own.public["demo/mine"].Version, a.lastVer)
		}
	}
	check("after echo")
	a.SetServices([]Service{svc("mine", 2)})
	check("after a change")
}

func TestUnknownNodesAreCollectedAfterTTL(t *testing.T) {
	clock := fakeclock.New(time.Now())
	a := start(t, testNode{name: "a", key: testKey, now: clock.Now, cfg: func(c *Config) { c.UnknownTTL = 5 * time.Minute }})
	ghost := nodeHeader{Node: "ghost", Cluster: "g", Region: "r", Gateway: "127.0.0.1:9", Version: 7}
	a.merge([]*wireNode{whole(ghost)}, false)
	a.publishNow()
	if v := view(a.Snapshot(), "ghost"); v == nil || v.State != "unknown" {
		t.Fatalf("ghost: %+v", v)
	}
	clock.Add(4 * time.Minute)
	a.collect()
	if _, ok := a.nodes["ghost"]; !ok {
		t.Fatal("unknown node collected before its TTL")
	}
	clock.Add(2 * time.Minute)
	a.collect()
	a.publishNow()
	if view(a.Snapshot(), "ghost") != nil {
		t.Fatal("unknown node not collected after its TTL")
	}
	a.merge([]*wireNode{whole(ghost)}, false)
	if _, ok := a.nodes["ghost"]; ok {
		t.Fatal("collected node resurrected by its old entry")
	}
	// Its name stays bound to its cluster.
	other := ghost
	other.Cluster, other.Version = "other", 100
	a.merge([]*wireNode{whole(other)}, false)
	if _, ok := a.nodes["ghost"]; ok || rejected(a, rejectNodeCluster) != 1 {
		t.Fatalf("another cluster took a collected node's name (refused %v)", rejected(a, rejectNodeCluster))
	}
}

// FuzzSignedEntry: whatever bytes arrive, a signed catalog keeps only
// entries whose signed fields (header, digest, certificate chain) are
// exactly what a gateway signed, and never panics. The seeds are signed
// by leaves of the root and of an intermediate, and by a renewed
// certificate; they are made afresh each run, since certificates expire.
func FuzzSignedEntry(f *testing.F) {
	pki := newTestPKI(f, testTrustDomain)
	tr := newTrust(f, identity.Revocations{}, pki.domain())
	signing := func(region, cluster string, viaIntermediate bool) *Signing {
		return BundleSigning(bundle(f, pki.issue(region, cluster, time.Hour, viaIntermediate), tr))
	}
	a := func() *Catalog {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.Bind, cfg.Insecure, cfg.Profile = "a", "127.0.0.1:0", true, "local"
		c, err := New(cfg, Self{Cluster: "a", Region: "eu", DataAddr: "127.0.0.1:1"}, nil,
			Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Signing: signing("eu", "a", true)})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(c.Kill)
		return c
	}()
	genuine := map[[digestLen]byte]bool{}
	seed := func(s *Signing, hdr nodeHeader, recs ...*record) {
		sg, err := newSigner(s, Self{Cluster: s2cluster(f, s), Region: s2region(f, s)})
		if err != nil {
			f.Fatal(err)
		}
		hdr = forge(f, sg, hdr, recs...).nodeHeader
		genuine[signedBytes(&hdr)] = true
		f.Add(encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{{nodeHeader: hdr, Records: recs}}}))
		delta := hdr
		delta.Cert, delta.Full = nil, false
		f.Add(encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{{nodeHeader: delta, Records: recs[:min(1, len(recs))]}}}))
	}
	y := signing("us", "y", true)
	seed(y, nodeHeader{Node: "y", Cluster: "y", Region: "us", Gateway: "127.0.0.1:2", Version: 10}, &record{Service: svc("pay", 1), Version: 9})
	seed(y, nodeHeader{Node: "y", Cluster: "y", Region: "us", Gateway: "127.0.0.1:2", Version: 11},
		&record{Service: svc("pay", 2), Version: 11}, &record{Service: Service{Namespace: "demo", Name: "old"}, Version: 11, Deleted: true})
	// y renewed: the same records under a new certificate and version.
	seed(signing("us", "y", true), nodeHeader{Node: "y", Cluster: "y", Region: "us", Gateway: "127.0.0.1:2", Version: 12},
		&record{Service: svc("pay", 2), Version: 11}, &record{Service: Service{Namespace: "demo", Name: "old"}, Version: 11, Deleted: true})
	seed(signing("eu", "x", false), nodeHeader{Node: "x", Cluster: "x", Region: "eu", Version: 5})
	f.Add(encodeMessage(&message{Kind: kindWant, Want: "y"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil || (m.Kind != kindDelta && m.Kind != kindState) {
			return
		}
		a.merge(m.Nodes, m.Kind == kindDelta)
		a.mu.Lock()
		defer a.mu.Unlock()
		for name, nd := range a.nodes {
			if name == "a" || !nd.verified {
				continue
			}
			if !genuine[signedBytes(&nd.nodeHeader)] {
				t.Fatalf("accepted an entry of %s nobody signed: %+v", name, nd.nodeHeader)
			}
			if entryDigest(nd.public) != nd.Digest {
				t.Fatalf("%s's records do not match its signed digest", name)
			}
			if fp := sha256.Sum256(nd.Cert); len(nd.Cert) > 0 && string(fp[:]) != string(nd.CertFP) {
				t.Fatalf("%s relays a certificate that is not its signed one", name)
			}
		}
	})
}

func s2id(tb testing.TB, s *Signing) identity.ID {
	_, chain := s.Current()
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		tb.Fatal(err)
	}
	id, err := identity.Parse(leaf)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func s2cluster(tb testing.TB, s *Signing) string { return s2id(tb, s).Cluster }
func s2region(tb testing.TB, s *Signing) string  { return s2id(tb, s).Region }

// Holding the gossip key is not enough to change it: key operations from
// peers must be signed by a gateway of the federation.
func TestKeyOperationsNeedAGatewaySignature(t *testing.T) {
	ca := newTestCA(t)
	a := start(t, testNode{name: "a", region: "eu", key: testKey, signing: ca.signing("eu", "a")})
	b := start(t, testNode{name: "b", region: "eu", key: testKey, signing: ca.signing("eu", "b"), join: []string{a.GossipAddr()}})
	waitView(t, a, "b", func(*Snapshot) bool { return a.Members() == 2 && b.Members() == 2 })
	raw, _ := DecodeKey(otherKey)
	a.handleKeyOp(&keyOp{ID: "forged", From: "b", Op: keyInstall, Key: raw})
	if st, _ := a.Keys(); len(st.Keys) != 1 || rejected(a, rejectUnsigned) != 1 {
		t.Fatalf("unsigned key operation: keys %v, refused %v", st.Keys, rejected(a, rejectUnsigned))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.KeyOp(ctx, "install", otherKey)
	if err != nil || !res.Complete || len(res.Applied) != 2 {
		t.Fatalf("signed key operation: %+v %v", res, err)
	}
}
