package sovereignty_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/straitmesh/strait/sovereignty"
)

// decisionPolicy has classes of every matcher kind, two classes that can
// apply together, and a region outside every group.
const decisionPolicy = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: decisions}
spec:
  regions: [ap-south]
  regionGroups:
    eu: [eu-west, eu-central]
    us: [us-east]
  classes:
    - name: pii-eu
      allowedRegions: [eu]
      match:
        services:
          - labels: {data-class: pii-eu}
        sources:
          - namespace: eu-customers
        headers:
          - {name: x-data-residency, value: eu}
      catalog: region-only
    - name: west-vault
      allowedRegions: [eu-west]
      match:
        services:
          - {namespace: secrets, name: vault, labels: {tier: gold}}
        sources:
          - {cluster: eu-west-9}
          - {region: eu-central, namespace: keys}
    - name: traced
      allowedRegions: [eu, us]
      match:
        headers:
          - {name: x-trace-residency}
  default: allow
`

func mustCompile(t testing.TB, doc string) *sovereignty.Engine {
	t.Helper()
	e, err := sovereignty.Compile("policy.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDecide(t *testing.T) {
	e := mustCompile(t, decisionPolicy)
	deny := mustCompile(t, strings.Replace(decisionPolicy, "default: allow", "default: deny", 1))
	ignore := mustCompile(t, strings.Replace(decisionPolicy, "default: allow", "default: allow\n  onUnknownValue: ignore", 1))
	ledger := map[string]string{"data-class": "pii-eu"}
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	euWest := sovereignty.Candidate{Cluster: "eu-west-1", Region: "eu-west"}
	euCentral := sovereignty.Candidate{Cluster: "eu-central-1", Region: "eu-central"}
	usEast := sovereignty.Candidate{Cluster: "us-east-1", Region: "us-east"}
	apSouth := sovereignty.Candidate{Cluster: "ap-south-1", Region: "ap-south"}
	unknown := sovereignty.Candidate{Cluster: "mars-1", Region: "mars"}

	for _, tc := range []struct {
		name   string
		engine *sovereignty.Engine
		flow   sovereignty.Flow
		cand   sovereignty.Candidate
		allow  bool
		rule   string
		reason sovereignty.Reason
	}{
		{"labelled service inside its regions", e, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "eu-central"}, euWest,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"labelled service from a foreign source region", e, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "us-east"}, euWest,
			false, "class:pii-eu", sovereignty.ReasonSourceRegion},
		{"labelled service to a foreign destination", e, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "eu-west"}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"labelled service to a region the policy does not know", e, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "eu-west"}, unknown,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"labelled service from a region the policy does not know", e, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "mars"}, euWest,
			false, "class:pii-eu", sovereignty.ReasonSourceRegion},
		{"other label value is not classified", e, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "public"}, SourceRegion: "us-east"}, usEast,
			true, "default", sovereignty.ReasonDefault},
		{"unlabelled service goes anywhere", e, sovereignty.Flow{Namespace: "demo", Name: "echo", SourceRegion: "us-east"}, apSouth,
			true, "default", sovereignty.ReasonDefault},
		{"default deny refuses unclassified flows", deny, sovereignty.Flow{Namespace: "demo", Name: "echo", SourceRegion: "us-east"}, usEast,
			false, "default", sovereignty.ReasonDefault},
		{"default deny still allows classified flows inside their regions", deny, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "eu-west"}, euCentral,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"header classifies http traffic", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "eu")}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"header names are case-insensitive", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("x-DATA-residency", "eu")}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"header values compare case-insensitively", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "EU")}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"white space around a header value is trimmed", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", " \teu ")}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"a comma-separated list with two values is refused", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "us-east", Headers: h("X-Data-Residency", "eu, us")}, usEast,
			false, "header:X-Data-Residency", sovereignty.ReasonAmbiguousHeader},
		{"a list repeating one value, empty items left out, is that value", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "eu,, EU ,")}, euCentral,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"an unknown value of a classifying header is refused", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "e u")}, euCentral,
			false, "header:X-Data-Residency", sovereignty.ReasonUnknownHeaderValue},
		{"onUnknownValue ignore: an unknown value is as if absent", ignore, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "e u")}, usEast,
			true, "default", sovereignty.ReasonDefault},
		{"an empty classifying header is as if absent", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", " , ")}, usEast,
			true, "default", sovereignty.ReasonDefault},
		{"header with the class's value allows its regions", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "eu")}, euCentral,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"a repeated header with one value is not ambiguous", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "eu", "X-Data-Residency", "eu")}, euCentral,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"a classifying header with two values is refused", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Data-Residency", "eu", "X-Data-Residency", "us")}, euCentral,
			false, "header:X-Data-Residency", sovereignty.ReasonAmbiguousHeader},
		{"no headers (L4) cannot be header-classified", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west"}, usEast,
			true, "default", sovereignty.ReasonDefault},
		{"presence-only header matcher", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: h("X-Trace-Residency", "anything")}, apSouth,
			false, "class:traced", sovereignty.ReasonDestinationRegion},
		{"source namespace classifies", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", SourceNamespace: "eu-customers"}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"source cluster classifies", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: "eu-west-9", SourceRegion: "eu-west"}, euCentral,
			false, "class:west-vault", sovereignty.ReasonDestinationRegion},
		{"source matcher needs every field: region without namespace", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: "c", SourceRegion: "eu-central"}, usEast,
			true, "default", sovereignty.ReasonDefault},
		{"source matcher with region and namespace", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: "c", SourceRegion: "eu-central", SourceNamespace: "keys"}, usEast,
			false, "class:west-vault", sovereignty.ReasonSourceRegion},
		{"service matcher needs every field: labels missing", e, sovereignty.Flow{Namespace: "secrets", Name: "vault", SourceRegion: "us-east"}, usEast,
			true, "default", sovereignty.ReasonDefault},
		{"service matcher needs every field: other namespace", e, sovereignty.Flow{Namespace: "other", Name: "vault", Labels: map[string]string{"tier": "gold"}, SourceRegion: "us-east"}, usEast,
			true, "default", sovereignty.ReasonDefault},
		{"two classes intersect: both allow eu-west", e, sovereignty.Flow{Namespace: "secrets", Name: "vault", Labels: map[string]string{"tier": "gold", "data-class": "pii-eu"}, SourceRegion: "eu-west"}, euWest,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"two classes intersect: eu-central allowed by one, not the other", e, sovereignty.Flow{Namespace: "secrets", Name: "vault", Labels: map[string]string{"tier": "gold", "data-class": "pii-eu"}, SourceRegion: "eu-west"}, euCentral,
			false, "class:west-vault", sovereignty.ReasonDestinationRegion},
		{"source checked before destination across classes", e, sovereignty.Flow{Namespace: "secrets", Name: "vault", Labels: map[string]string{"tier": "gold", "data-class": "pii-eu"}, SourceRegion: "eu-central"}, usEast,
			false, "class:west-vault", sovereignty.ReasonSourceRegion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.engine.Decide(&tc.flow, tc.cand)
			if d.Allow != tc.allow || d.Rule.ID != tc.rule || d.Reason != tc.reason {
				t.Errorf("Decide = allow %v rule %s reason %s; want allow %v rule %s reason %s",
					d.Allow, d.Rule.ID, d.Reason, tc.allow, tc.rule, tc.reason)
			}
			if d.Rule.At == "" || d.Rule.Path == "" {
				t.Errorf("rule %s has no position", d.Rule.ID)
			}
			if desc := d.Describe(tc.flow.SourceRegion, tc.cand); !d.Allow && tc.rule != "default" && !strings.Contains(desc, strings.TrimPrefix(strings.TrimPrefix(tc.rule, "class:"), "header:")) {
				t.Errorf("Describe %q does not name %s", desc, tc.rule)
			}
		})
	}
}

func TestDescribeNamesClassRuleAndPosition(t *testing.T) {
	e := mustCompile(t, decisionPolicy)
	f := sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"}, SourceRegion: "us-east"}
	c := sovereignty.Candidate{Cluster: "eu-west-1", Region: "eu-west"}
	got := e.Decide(&f, c).Describe(f.SourceRegion, c)
	want := "class pii-eu allows regions [eu-central eu-west]; the source region us-east is outside them (rule class:pii-eu, spec.classes[0].allowedRegions at policy.yaml:11:7)"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestClassesAndRegions(t *testing.T) {
	e := mustCompile(t, decisionPolicy)
	f := sovereignty.Flow{Namespace: "secrets", Name: "vault", Labels: map[string]string{"tier": "gold"}, SourceRegion: "eu-west",
		Headers: http.Header{"X-Data-Residency": {"eu"}}}
	cls := e.Classify(&f)
	if got := strings.Join(e.ClassNames(cls), ","); got != "pii-eu,west-vault" {
		t.Errorf("classes %q", got)
	}
	regions, restricted := e.AllowedRegions(cls)
	if !restricted || strings.Join(regions, ",") != "eu-west" {
		t.Errorf("allowed regions %v %v, want [eu-west] restricted", regions, restricted)
	}
	if _, restricted := e.AllowedRegions(sovereignty.Classes{}); restricted {
		t.Error("no class is restricted")
	}
	named, unknown := e.ClassesNamed([]string{"traced", "gone"})
	if strings.Join(e.ClassNames(named), ",") != "traced" || strings.Join(unknown, ",") != "gone" {
		t.Errorf("ClassesNamed: %v unknown %v", e.ClassNames(named), unknown)
	}
	u := cls.Union(named)
	if strings.Join(e.ClassNames(u), ",") != "pii-eu,west-vault,traced" {
		t.Errorf("union %v", e.ClassNames(u))
	}
	m := e.Matched(&f)
	if len(m["pii-eu"]) != 1 || m["pii-eu"][0].Kind != "header" || len(m["west-vault"]) != 1 || m["west-vault"][0].Text != "namespace=secrets,name=vault,tier=gold" {
		t.Errorf("matched %+v", m)
	}
}

func TestCatalogRegions(t *testing.T) {
	e := mustCompile(t, decisionPolicy)
	for _, tc := range []struct {
		name       string
		ns, svc    string
		labels     map[string]string
		regions    string
		restricted bool
	}{
		{"region-only class scopes its services", "demo", "ledger", map[string]string{"data-class": "pii-eu"}, "eu-central,eu-west", true},
		{"a class without region-only does not scope", "secrets", "vault", map[string]string{"tier": "gold"}, "", false},
		{"unclassified service goes everywhere", "demo", "echo", nil, "", false},
		{"header and source matchers never scope the catalog", "demo", "profile", map[string]string{"x-data-residency": "eu"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			regions, restricted := e.CatalogRegions(tc.ns, tc.svc, tc.labels)
			if restricted != tc.restricted || strings.Join(regions, ",") != tc.regions {
				t.Errorf("CatalogRegions = %v %v, want [%s] %v", regions, restricted, tc.regions, tc.restricted)
			}
		})
	}
	// Two region-only classes intersect.
	two := mustCompile(t, strings.Replace(decisionPolicy, "          - {region: eu-central, namespace: keys}\n",
		"          - {region: eu-central, namespace: keys}\n      catalog: region-only\n", 1))
	regions, restricted := two.CatalogRegions("secrets", "vault", map[string]string{"tier": "gold", "data-class": "pii-eu"})
	if !restricted || strings.Join(regions, ",") != "eu-west" {
		t.Errorf("two region-only classes: %v %v, want [eu-west]", regions, restricted)
	}
}

func TestAllowAll(t *testing.T) {
	e := sovereignty.AllowAll()
	f := sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"}, SourceRegion: "x"}
	if d := e.Decide(&f, sovereignty.Candidate{Cluster: "y", Region: "z"}); !d.Allow || d.Reason != sovereignty.ReasonDefault {
		t.Errorf("allow-all decided %+v", d)
	}
}

// TestDecideAllocatesNothing proves the decision path's promise.
func TestDecideAllocatesNothing(t *testing.T) {
	e := mustCompile(t, decisionPolicy)
	f := sovereignty.Flow{Namespace: "secrets", Name: "vault", Labels: map[string]string{"tier": "gold", "data-class": "pii-eu"},
		SourceCluster: "eu-west-1", SourceRegion: "eu-west", SourceNamespace: "keys",
		Headers: http.Header{"X-Data-Residency": {"eu"}, "X-Trace-Residency": {"1"}, "Accept": {"*/*"}}}
	c := sovereignty.Candidate{Cluster: "eu-central-1", Region: "eu-central"}
	var d sovereignty.Decision
	allocs := testing.AllocsPerRun(1000, func() { d = e.Decide(&f, c) })
	if allocs != 0 {
		t.Errorf("Decide allocates %v times per call", allocs)
	}
	if d.Allow {
		t.Error("expected a deny from west-vault")
	}
	pre := f
	pre.Service = e.ServiceClasses(f.Namespace, f.Name, f.Labels)
	allocs = testing.AllocsPerRun(1000, func() { d = e.Decide(&pre, c) })
	if allocs != 0 {
		t.Errorf("Decide allocates %v times per call with precomputed service classes", allocs)
	}
	if d.Allow {
		t.Error("expected a deny from west-vault with precomputed service classes")
	}
	allocs = testing.AllocsPerRun(1000, func() { _ = e.ServiceClasses(f.Namespace, f.Name, f.Labels) })
	if allocs != 0 {
		t.Errorf("ServiceClasses allocates %v times per call", allocs)
	}
	cls := e.Classify(&f)
	allocs = testing.AllocsPerRun(1000, func() { d = e.DecideClasses(cls, "eu-west", c) })
	if allocs != 0 {
		t.Errorf("DecideClasses allocates %v times per call", allocs)
	}
	u := sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: "eu-west-1", SourceRegion: "eu-west", Unreadable: true}
	allocs = testing.AllocsPerRun(1000, func() { d = e.Decide(&u, c) })
	if allocs != 0 {
		t.Errorf("Decide allocates %v times per call for an unreadable flow", allocs)
	}
	if !d.Allow || d.Rule.ID != "class:pii-eu" {
		t.Errorf("unreadable flow decided %+v", d)
	}
}

// TestEngineConcurrentUse decides from many goroutines at once; with -race
// it proves the engine needs no locking.
func TestEngineConcurrentUse(t *testing.T) {
	e := mustCompile(t, decisionPolicy)
	want := map[string]bool{"eu-west": true, "eu-central": true, "us-east": false}
	done := make(chan error, 8)
	for range 8 {
		go func() {
			f := sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"}, SourceRegion: "eu-west"}
			for i := range 2000 {
				for region, allow := range want {
					if d := e.Decide(&f, sovereignty.Candidate{Cluster: "c", Region: region}); d.Allow != allow {
						done <- fmt.Errorf("iteration %d: %s decided %v", i, region, d.Allow)
						return
					}
				}
				_, _ = e.CatalogRegions("demo", "ledger", f.Labels)
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnreadable: a flow the gateway cannot read carries every class with
// a header matcher, unless the class says unreadable: allow.
func TestUnreadable(t *testing.T) {
	example := readFile(t, examplePath)
	e := mustCompile(t, example)
	allow := mustCompile(t, strings.Replace(example, "      catalog: region-only\n", "      catalog: region-only\n      unreadable: allow\n", 1))
	// Two header classes on one header with disjoint regions compile (a
	// readable flow carries one value), but an unreadable flow carries both.
	disjoint := mustCompile(t, `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: disjoint}
spec:
  regionGroups:
    eu: [eu-west, eu-central]
    us: [us-east]
  classes:
    - name: pii-eu
      allowedRegions: [eu]
      match:
        headers:
          - {name: x-data-residency, value: eu}
    - name: pii-us
      allowedRegions: [us]
      match:
        headers:
          - {name: x-data-residency, value: us}
`)
	// decisionPolicy's west-vault has only service and source matchers.
	d := mustCompile(t, decisionPolicy)
	euCentral := sovereignty.Candidate{Cluster: "eu-central-1", Region: "eu-central"}
	usEast := sovereignty.Candidate{Cluster: "us-east-1", Region: "us-east"}
	euWest := sovereignty.Candidate{Cluster: "eu-west-1", Region: "eu-west"}
	unreadable := func(from string) sovereignty.Flow {
		return sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: from + "-1", SourceRegion: from, Unreadable: true}
	}
	for _, tc := range []struct {
		name    string
		engine  *sovereignty.Engine
		flow    sovereignty.Flow
		cand    sovereignty.Candidate
		classes string
		allow   bool
		rule    string
		reason  sovereignty.Reason
	}{
		{"unreadable flow carries the header class and may not leave its regions", e, unreadable("eu-west"), usEast,
			"pii-eu", false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"unreadable flow stays allowed inside the class's regions", e, unreadable("eu-west"), euCentral,
			"pii-eu", true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"unreadable flow from outside the class's regions", e, unreadable("us-east"), usEast,
			"pii-eu", false, "class:pii-eu", sovereignty.ReasonSourceRegion},
		{"the same flow readable and unmarked is unclassified", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west"}, usEast,
			"", true, "default", sovereignty.ReasonDefault},
		{"unreadable: allow leaves the flow out of the class", allow, unreadable("eu-west"), usEast,
			"", true, "default", sovereignty.ReasonDefault},
		{"unreadable: allow does not disable the class's other matchers", allow, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"}, SourceRegion: "eu-west", Unreadable: true}, usEast,
			"pii-eu", false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"two header classes with disjoint regions: allowed nowhere (eu)", disjoint, unreadable("eu-west"), euCentral,
			"pii-eu,pii-us", false, "class:pii-us", sovereignty.ReasonSourceRegion},
		{"two header classes with disjoint regions: allowed nowhere (us)", disjoint, unreadable("us-east"), usEast,
			"pii-eu,pii-us", false, "class:pii-eu", sovereignty.ReasonSourceRegion},
		{"a class with only service and source matchers is unaffected", d, sovereignty.Flow{Namespace: "secrets", Name: "vault", SourceRegion: "eu-central", Unreadable: true}, euCentral,
			"pii-eu,traced", true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"headers read around unreadable bytes (a CONNECT carrying TLS) add to the classes", e, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: http.Header{}, Unreadable: true}, usEast,
			"pii-eu", false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"an unreadable flow still has the classes of the headers that were read", disjoint, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "us-east", Headers: http.Header{"X-Data-Residency": {"us"}}, Unreadable: true}, usEast,
			"pii-eu,pii-us", false, "class:pii-eu", sovereignty.ReasonSourceRegion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.engine.ClassNames(tc.engine.Classify(&tc.flow)), ","); got != tc.classes {
				t.Errorf("classes %q, want %q", got, tc.classes)
			}
			dec := tc.engine.Decide(&tc.flow, tc.cand)
			if dec.Allow != tc.allow || dec.Rule.ID != tc.rule || dec.Reason != tc.reason {
				t.Errorf("Decide = allow %v rule %s reason %s; want allow %v rule %s reason %s",
					dec.Allow, dec.Rule.ID, dec.Reason, tc.allow, tc.rule, tc.reason)
			}
		})
	}

	// Allowed nowhere: the classes' regions do not intersect.
	if regions, restricted := disjoint.AllowedRegions(disjoint.Classify(&sovereignty.Flow{Unreadable: true})); !restricted || len(regions) != 0 {
		t.Errorf("disjoint classes allow %v (restricted %v), want none", regions, restricted)
	}
	for _, c := range []sovereignty.Candidate{euWest, euCentral, usEast} {
		for _, from := range []string{"eu-west", "eu-central", "us-east"} {
			f := unreadable(from)
			if dec := disjoint.Decide(&f, c); dec.Allow {
				t.Errorf("disjoint classes allowed an unreadable flow from %s to %s", from, c.Region)
			}
		}
	}
}

// TestUnreadableIsExplained: Matched says a class applies because the flow
// cannot be read, at the field that says so; ClassInfo shows the setting.
func TestUnreadableIsExplained(t *testing.T) {
	example := readFile(t, examplePath)
	e := mustCompile(t, example)
	f := sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"}, SourceRegion: "eu-west", Unreadable: true}
	m := e.Matched(&f)["pii-eu"]
	want := sovereignty.MatcherInfo{Path: "spec.classes[0].match.headers", At: "policy.yaml:17:9", Kind: sovereignty.KindUnreadable,
		Text: "the flow cannot be read and the class matches headers (unreadable: restrict)"}
	if len(m) != 2 || m[0] != want || m[1].Kind != "service" {
		t.Errorf("matched %+v\nwant %+v and the service matcher", m, want)
	}
	f.Headers, f.Unreadable = http.Header{}, false
	if m := e.Matched(&f)["pii-eu"]; len(m) != 1 || m[0].Kind != "service" {
		t.Errorf("a readable flow matched %+v", m)
	}
	f.Unreadable = true

	written := mustCompile(t, strings.Replace(example, "      catalog: region-only\n", "      catalog: region-only\n      unreadable: restrict\n", 1))
	f.Headers = nil
	if m := written.Matched(&f)["pii-eu"]; len(m) != 2 || m[0].Path != "spec.classes[0].unreadable" || m[0].At != "policy.yaml:20:19" {
		t.Errorf("with unreadable written, matched %+v", m)
	}
	allow := mustCompile(t, strings.Replace(example, "      catalog: region-only\n", "      catalog: region-only\n      unreadable: allow\n", 1))
	f.Labels = nil
	if m := allow.Matched(&f); len(m) != 0 {
		t.Errorf("unreadable: allow matched %+v", m)
	}

	for _, tc := range []struct {
		engine *sovereignty.Engine
		class  string
		want   string
	}{
		{e, "pii-eu", sovereignty.UnreadableRestrict},
		{written, "pii-eu", sovereignty.UnreadableRestrict},
		{allow, "pii-eu", sovereignty.UnreadableAllow},
		{mustCompile(t, decisionPolicy), "west-vault", ""},
	} {
		if ci, _ := tc.engine.Class(tc.class); ci.Unreadable != tc.want {
			t.Errorf("%s: ClassInfo.Unreadable %q, want %q", tc.class, ci.Unreadable, tc.want)
		}
	}
}

// TestClaimsOnlyNarrow: what a client claims (headers, the source
// namespace, and so the header classes of a flow the gateway cannot read,
// and classes a peer names) can keep a flow in a class's regions but
// never turn a refusal into an allow. Under default allow claims narrow
// as always; under default deny a flow whose classes all come from claims
// is refused, whatever those classes allow.
func TestClaimsOnlyNarrow(t *testing.T) {
	allowDoc := strings.Replace(decisionPolicy, "  default: allow\n", `    - name: ops
      allowedRegions: [eu-west]
      match:
        sources:
          - {region: eu, namespace: ops}
          - {cluster: eu-west-2}
  default: allow
`, 1)
	allow := mustCompile(t, allowDoc)
	deny := mustCompile(t, strings.Replace(allowDoc, "default: allow", "default: deny", 1))
	ledger := map[string]string{"data-class": "pii-eu"}
	euWest := sovereignty.Candidate{Cluster: "eu-west-1", Region: "eu-west"}
	euCentral := sovereignty.Candidate{Cluster: "eu-central-1", Region: "eu-central"}
	usEast := sovereignty.Candidate{Cluster: "us-east-1", Region: "us-east"}
	header := http.Header{"X-Data-Residency": {"eu"}}
	for _, tc := range []struct {
		name   string
		engine *sovereignty.Engine
		flow   sovereignty.Flow
		cand   sovereignty.Candidate
		allow  bool
		rule   string
		reason sovereignty.Reason
	}{
		// default: allow: claims narrow, as before.
		{"allow: a header class keeps the flow in its regions", allow, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: header}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"allow: a header class allows inside its regions", allow, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: header}, euCentral,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"allow: a namespace class keeps the flow in its regions", allow, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", SourceNamespace: "eu-customers"}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"allow: a namespace class allows inside its regions", allow, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", SourceNamespace: "eu-customers"}, euWest,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"allow: an unreadable flow stays in its header classes' regions", allow, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Unreadable: true}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},

		// default: deny: claims never widen.
		{"deny: unclassified is refused", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west"}, euCentral,
			false, "default", sovereignty.ReasonDefault},
		{"deny: a header does not turn the refusal into an allow", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: header}, euCentral,
			false, "default", sovereignty.ReasonClaimsOnly},
		{"deny: a presence-only header does not either", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: http.Header{"X-Trace-Residency": {"1"}}}, usEast,
			false, "default", sovereignty.ReasonClaimsOnly},
		{"deny: a header class still cites its own refusal first", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: header}, usEast,
			false, "class:pii-eu", sovereignty.ReasonDestinationRegion},
		{"deny: a namespace claim does not turn the refusal into an allow", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", SourceNamespace: "eu-customers"}, euWest,
			false, "default", sovereignty.ReasonClaimsOnly},
		{"deny: a source matcher with a region and a namespace is a claim", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: "eu-west-1", SourceRegion: "eu-west", SourceNamespace: "ops"}, euWest,
			false, "default", sovereignty.ReasonClaimsOnly},
		{"deny: an unreadable flow's header classes do not allow it", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Unreadable: true}, euCentral,
			false, "default", sovereignty.ReasonClaimsOnly},
		{"deny: a service label allows inside its regions", deny, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "eu-west"}, euCentral,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"deny: a source cluster allows inside its regions", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: "eu-west-9", SourceRegion: "eu-west"}, euWest,
			true, "class:west-vault", sovereignty.ReasonAllowed},
		{"deny: a firm matcher after a claimed one in the same class", deny, sovereignty.Flow{Namespace: "demo", Name: "profile", SourceCluster: "eu-west-2", SourceRegion: "eu-west", SourceNamespace: "ops"}, euWest,
			true, "class:ops", sovereignty.ReasonAllowed},
		{"deny: a label class with a header allows where both do", deny, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "eu-west", Headers: http.Header{"X-Trace-Residency": {"1"}}}, euCentral,
			true, "class:pii-eu", sovereignty.ReasonAllowed},
		{"deny: claims still narrow a flow a firm class allows", deny, sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceCluster: "eu-central-1", SourceRegion: "eu-central", SourceNamespace: "keys"}, euCentral,
			false, "class:west-vault", sovereignty.ReasonSourceRegion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.engine.Decide(&tc.flow, tc.cand)
			if d.Allow != tc.allow || d.Rule.ID != tc.rule || d.Reason != tc.reason {
				t.Errorf("Decide = allow %v rule %s reason %s; want allow %v rule %s reason %s",
					d.Allow, d.Rule.ID, d.Reason, tc.allow, tc.rule, tc.reason)
			}
		})
	}

	// Classes a peer names are claims too, alone or next to its own.
	named, _ := deny.ClassesNamed([]string{"pii-eu"})
	if d := deny.DecideClasses(named, "eu-west", euCentral); d.Allow || d.Reason != sovereignty.ReasonClaimsOnly {
		t.Errorf("named classes alone decided %+v", d)
	}
	own := deny.Classify(&sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: ledger, SourceRegion: "eu-west"})
	if d := deny.DecideClasses(own.Union(named), "eu-west", euCentral); !d.Allow {
		t.Errorf("a label class with the same named class decided %+v", d)
	}
	// The union keeps a class firm when any label set made it so.
	claimed := deny.Classify(&sovereignty.Flow{Namespace: "demo", Name: "ledger", SourceRegion: "eu-west", Headers: header})
	if d := deny.DecideClasses(claimed.Union(own), "eu-west", euCentral); !d.Allow {
		t.Errorf("header class united with the label class decided %+v", d)
	}
	if d := deny.DecideClasses(claimed, "eu-west", euCentral); d.Allow {
		t.Errorf("header class alone decided %+v", d)
	}

	f := sovereignty.Flow{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Headers: header}
	got := deny.Decide(&f, euCentral).Describe(f.SourceRegion, euCentral)
	want := "only claims (headers, source namespace) put the flow in a class, and claims only narrow: no other class applies and the policy's default is deny (spec.default at policy.yaml:"
	if !strings.HasPrefix(got, want) {
		t.Errorf("Describe = %s\nwant it to start %s", got, want)
	}
}
