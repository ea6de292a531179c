package sovereignty

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// randomPolicy writes a policy over six regions in three groups with n
// classes of random matchers. Most classes allow r0, so most policies
// compile; the others are refused by the compiler and skipped.
func randomPolicy(rng *rand.Rand, n int) string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	var b strings.Builder
	b.WriteString("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: random}\nspec:\n")
	b.WriteString("  regions: [r5]\n  regionGroups:\n    g0: [r0, r1]\n    g1: [r2, r3]\n    g2: [r4]\n")
	b.WriteString("  classes:\n")
	for i := range n {
		allowed := []string{pick("r0", "g0", "r0, r2", "g0, g2", "r0, r5")}
		if rng.IntN(12) == 0 {
			allowed = []string{pick("r3", "g1", "r4, r5")}
		}
		fmt.Fprintf(&b, "    - name: c%d\n      allowedRegions: [%s]\n      match:\n", i, allowed[0])
		hasHeaders := false
		kinds := 1 + rng.IntN(7) // services, sources, headers: at least one
		for k := range 3 {
			if kinds&(1<<k) == 0 {
				continue
			}
			switch k {
			case 0:
				b.WriteString("        services:\n")
				for range 1 + rng.IntN(2) {
					var fs []string
					if rng.IntN(2) == 0 {
						fs = append(fs, "namespace: "+pick("ns0", "ns1", "ns2"))
					}
					if rng.IntN(2) == 0 {
						fs = append(fs, "name: "+pick("svc0", "svc1", "svc2"))
					}
					if rng.IntN(2) == 0 || len(fs) == 0 {
						var ls []string
						for _, key := range []string{"k0", "k1"} {
							if rng.IntN(2) == 0 || key == "k1" && len(ls) == 0 {
								ls = append(ls, key+": "+pick("v0", "v1"))
							}
						}
						fs = append(fs, "labels: {"+strings.Join(ls, ", ")+"}")
					}
					fmt.Fprintf(&b, "          - {%s}\n", strings.Join(fs, ", "))
				}
			case 1:
				b.WriteString("        sources:\n")
				for range 1 + rng.IntN(2) {
					var fs []string
					if rng.IntN(3) == 0 {
						fs = append(fs, "cluster: "+pick("cl0", "cl1"))
					}
					if rng.IntN(2) == 0 {
						fs = append(fs, "region: "+pick("r0", "r1", "r2", "g0", "g1", "r5"))
					}
					if rng.IntN(2) == 0 || len(fs) == 0 {
						fs = append(fs, "namespace: "+pick("team0", "team1"))
					}
					fmt.Fprintf(&b, "          - {%s}\n", strings.Join(fs, ", "))
				}
			case 2:
				hasHeaders = true
				b.WriteString("        headers:\n")
				for range 1 + rng.IntN(2) {
					name := pick("x-a", "X-A", "x-b", "X-C")
					if rng.IntN(4) == 0 {
						fmt.Fprintf(&b, "          - {name: %s}\n", name)
						continue
					}
					fmt.Fprintf(&b, "          - {name: %s, value: %q}\n", name, pick("eu", "EU", " us", "ü", "k", "\u212a", "x"))
				}
			}
		}
		if hasHeaders {
			switch rng.IntN(3) {
			case 0:
				b.WriteString("      unreadable: allow\n")
			case 1:
				b.WriteString("      unreadable: restrict\n")
			}
		}
	}
	b.WriteString("  default: " + pick("allow", "deny") + "\n")
	if rng.IntN(2) == 0 {
		b.WriteString("  onUnknownValue: " + pick("refuse", "ignore") + "\n")
	}
	return b.String()
}

func randomLabels(rng *rand.Rand) map[string]string {
	if rng.IntN(4) == 0 {
		return nil
	}
	ls := map[string]string{}
	for _, k := range []string{"k0", "k1", "app"} {
		if rng.IntN(2) == 0 {
			ls[k] = []string{"v0", "v1", "V0"}[rng.IntN(3)]
		}
	}
	return ls
}

func randomFlow(rng *rand.Rand) Flow {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	f := Flow{Namespace: pick("ns0", "ns1", "ns2", "other"), Name: pick("svc0", "svc1", "svc2", "other"), Labels: randomLabels(rng),
		SourceCluster: pick("cl0", "cl1", "clx", ""), SourceRegion: pick("r0", "r1", "r2", "r3", "r4", "r5", "nowhere", ""),
		SourceNamespace: pick("", "team0", "team1", "other"), Unreadable: rng.IntN(4) == 0}
	if rng.IntN(3) > 0 {
		f.Headers = http.Header{}
		for range rng.IntN(5) {
			name := pick("X-A", "X-B", "X-C", "x-a", "Accept", "X-Other")
			var vs []string
			for range rng.IntN(3) {
				vs = append(vs, pick("eu", "EU", " eu ,eu", "eu, us", "", " ", ",", "us", "ü", "Ü", "k", "K", "\u212a", "europe", "x"))
			}
			f.Headers[name] = vs
		}
	}
	return f
}

// TestFastPathAgreesWithReference compares the indexed decision path
// (Classify, ServiceClasses, DecideClasses) with the straightforward walk
// over every matcher (refClassify, refDecideClasses) on random policies,
// flows and candidates, with and without a precomputed Flow.Service, for
// flows joined over several label sets and with claimed classes added.
// Seeded and bounded: it must find no difference at all.
func TestFastPathAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 4))
	regions := []string{"r0", "r1", "r2", "r3", "r4", "r5", "nowhere", ""}
	compiled, decisions := 0, 0
	reasons := map[Reason]int{}
	var other *Engine
	for p := range 400 {
		n := 1 + rng.IntN(8)
		if p%10 == 0 {
			n = 60 + rng.IntN(80) // several words of the class bitsets
		}
		doc := randomPolicy(rng, n)
		e, err := Compile("random.yaml", []byte(doc))
		if err != nil {
			continue
		}
		compiled++
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("policy %d:\n%s\n%s", p, doc, fmt.Sprintf(format, args...))
		}
		for range 60 {
			f := randomFlow(rng)
			want := e.refClassify(&f)
			if got := e.Classify(&f); got != want {
				fail("flow %+v: Classify %+v, reference %+v", f, got, want)
			}
			// The headers walked and looked up, whichever classifyHeaders
			// would pick for this flow and policy.
			for _, walk := range []bool{true, false} {
				var got Classes
				noHeaders := f
				noHeaders.Headers = nil
				e.classify(&noHeaders, &got)
				if f.Headers != nil {
					e.classifyHeadersBy(f.Headers, &got, walk)
				}
				if got != want {
					fail("flow %+v: headers walked (%v) %+v, reference %+v", f, walk, got, want)
				}
			}
			// The service precomputed, as the gateway hands it in; one from
			// another engine is ignored.
			pre := f
			pre.Service = e.ServiceClasses(f.Namespace, f.Name, f.Labels)
			if got := e.Classify(&pre); got != want {
				fail("flow %+v: Classify with Service %+v, reference %+v", f, got, want)
			}
			if other != nil {
				stale := f
				stale.Service = other.ServiceClasses(f.Namespace, f.Name, f.Labels)
				if got := e.Classify(&stale); got != want {
					fail("flow %+v: Classify with another engine's Service %+v, reference %+v", f, got, want)
				}
			}
			// A service exported with two label sets: the union of the
			// flows, as route.NewPlan classified it.
			second := f
			second.Labels = randomLabels(rng)
			joined := want.Union(e.refClassify(&second))
			both := f
			both.Service = e.ServiceClasses(f.Namespace, f.Name, f.Labels).Union(e.ServiceClasses(f.Namespace, f.Name, second.Labels))
			if got := e.Classify(&both); got != joined {
				fail("flow %+v and labels %v: Classify %+v, reference %+v", f, second.Labels, got, joined)
			}
			// Classes a peer claims.
			var names []string
			for _, c := range e.classes {
				if rng.IntN(6) == 0 {
					names = append(names, c.name)
				}
			}
			claimed, _ := e.ClassesNamed(names)
			for _, cls := range []Classes{want, joined, claimed, want.Union(claimed), claimed.Union(want)} {
				for range 3 {
					src, dst := regions[rng.IntN(len(regions))], regions[rng.IntN(len(regions))]
					c := Candidate{Cluster: "cl", Region: dst}
					got, ref := e.DecideClasses(cls, src, c), e.refDecideClasses(cls, src, c)
					if got != ref {
						fail("classes %+v from %q to %q: DecideClasses %+v (%s), reference %+v (%s)", cls, src, dst, got, got.Rule.ID, ref, ref.Rule.ID)
					}
					decisions++
					reasons[ref.Reason]++
				}
			}
			c := Candidate{Cluster: "cl", Region: regions[rng.IntN(len(regions))]}
			if got, ref := e.Decide(&pre, c), e.refDecideClasses(want, f.SourceRegion, c); got != ref {
				fail("flow %+v to %q: Decide %+v, reference %+v", f, c.Region, got, ref)
			}
		}
		other = e
	}
	if compiled < 200 {
		t.Fatalf("only %d of 400 random policies compiled; the generator no longer exercises the engine", compiled)
	}
	for r := ReasonDefault; r <= ReasonClaimsOnly; r++ {
		if reasons[r] == 0 {
			t.Errorf("no random decision had reason %s; the generator no longer reaches it", r)
		}
	}
	t.Logf("%d policies, %d decisions, no difference; reasons %v", compiled, decisions, reasons)
}

// TestServiceClassesUnion: the zero value is the identity, and sets of two
// engines make one that neither engine uses.
func TestServiceClassesUnion(t *testing.T) {
	a, err := Compile("a.yaml", []byte(randomPolicy(rand.New(rand.NewPCG(1, 1)), 3)))
	if err != nil {
		t.Fatal(err)
	}
	b := AllowAll()
	s := a.ServiceClasses("ns0", "svc0", nil)
	if got := (ServiceClasses{}).Union(s); got != s || !got.For(a) {
		t.Errorf("zero ∪ s = %+v, want %+v", got, s)
	}
	if got := s.Union(ServiceClasses{}); got != s {
		t.Errorf("s ∪ zero = %+v, want %+v", got, s)
	}
	if got := s.Union(b.ServiceClasses("ns0", "svc0", nil)); got.For(a) || got.For(b) {
		t.Errorf("a union across engines is used by one: %+v", got)
	}
	if (ServiceClasses{}).For(nil) {
		t.Error("the zero value is for the nil engine")
	}
}

// TestRegionIndex: region finds every region of a policy and no other
// name, in a shortList (few short names) or a nameTable (more, or a long
// one).
func TestRegionIndex(t *testing.T) {
	for _, n := range []int{1, 16, 17, 40, -3} {
		var names []string
		for i := range max(n, -n) {
			names = append(names, fmt.Sprintf("region-%02d", i))
			if n < 0 { // few regions, one of them longer than a shortList holds
				names[i] += strings.Repeat("-long", i)
			}
		}
		n = max(n, -n)
		doc := fmt.Sprintf("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: regions}\nspec:\n  regions: [%s]\n", strings.Join(names, ", "))
		e, err := Compile("regions.yaml", []byte(doc))
		if err != nil {
			t.Fatalf("%d regions: %v", n, err)
		}
		if len(e.regions) != n {
			t.Fatalf("%d regions compiled as %v", n, e.regions)
		}
		if list := n <= maxShortList && !strings.Contains(doc, "-long"); (e.regionList != nil) != list || (e.regionTable != nil) == list {
			t.Fatalf("%q: list %v, table %v", names, e.regionList != nil, e.regionTable != nil)
		}
		for want, name := range e.regions {
			if i, ok := e.region(name); !ok || i != want {
				t.Errorf("%d regions: region(%q) = %d, %v; want %d", n, name, i, ok, want)
			}
		}
		for _, name := range []string{"", "region-", "region-99", "REGION-00", "region-00 "} {
			if i, ok := e.region(name); ok {
				t.Errorf("%d regions: region(%q) = %d, found", n, name, i)
			}
		}
	}
}
