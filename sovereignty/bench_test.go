//go:build bench

package sovereignty_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/straitmesh/strait/sovereignty"
)

// benchPolicy has fifty classes of every matcher kind over six regions, so
// a decision walks a realistic number of matchers. Each class reads a
// header of its own (x-residency-N: rN): fifty header names.
func benchPolicy() string {
	return benchPolicyHeaders(func(i int) string { return fmt.Sprintf("x-residency-%d", i) })
}

// benchPolicyHeaders is benchPolicy with the header name class i reads.
func benchPolicyHeaders(header func(i int) string) string {
	var b strings.Builder
	b.WriteString("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: bench}\nspec:\n")
	b.WriteString("  regionGroups:\n    eu: [eu-west, eu-central, eu-north]\n    us: [us-east, us-west]\n    ap: [ap-south]\n")
	b.WriteString("  classes:\n")
	for i := range 50 {
		group := []string{"eu", "eu, us", "eu, ap"}[i%3] // every two classes share eu, or the policy would not compile
		fmt.Fprintf(&b, `    - name: class-%d
      allowedRegions: [%s]
      match:
        services:
          - labels: {data-class: c%d}
          - {namespace: ns%d, name: svc%d}
        sources:
          - {namespace: team-%d}
        headers:
          - {name: %s, value: r%d}
`, i, group, i, i, i, i, header(i), i)
	}
	return b.String()
}

// TestBenchResidencyDecide measures one decision for a flow with labels,
// a source and HTTP headers against fifty classes, for one candidate:
// residency_decide as the gateway makes it, with the service's classes
// computed when the catalog changed (Flow.Service), so only the flow's
// source namespace and headers are looked at; residency_decide_uncached
// for a caller that hands in the labels and lets Decide match the
// services matchers too; residency_decide_reference for the walk over
// every matcher that Decide was before (reference_test.go), as the
// baseline of the same run; residency_decide_one_header for a policy
// whose classes read one header name.
func TestBenchResidencyDecide(t *testing.T) {
	e, err := sovereignty.Compile("bench.yaml", []byte(benchPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	f := sovereignty.Flow{Namespace: "ns3", Name: "ledger", Labels: map[string]string{"data-class": "c3", "app": "ledger", "tier": "gold"},
		SourceCluster: "eu-west-1", SourceRegion: "eu-west", SourceNamespace: "payments",
		Headers: http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}, "X-Residency-3": {"r3"}}}
	pre := f
	pre.Service = e.ServiceClasses(f.Namespace, f.Name, f.Labels)
	c := sovereignty.Candidate{Cluster: "eu-central-1", Region: "eu-central"}
	for _, fl := range []*sovereignty.Flow{&f, &pre} {
		if d := e.Decide(fl, c); !d.Allow || d.Rule.ID != "class:class-3" {
			t.Fatalf("benchmark flow decided %+v", d)
		}
	}
	if d := e.ReferenceDecide(&f, c); d != e.Decide(&pre, c) {
		t.Fatalf("the reference decided %+v", d)
	}
	// Each figure is the median of benchRounds rounds of about a second:
	// on a shared machine one round reads up to a third above or below
	// the next; the rounds are printed too.
	const benchRounds = 5
	report := func(name string, decide func(*sovereignty.Flow, sovereignty.Candidate) sovereignty.Decision, fl *sovereignty.Flow) {
		var ns []float64
		var allocs int64
		for range benchRounds {
			r := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					decide(fl, c)
				}
			})
			ns = append(ns, float64(r.T.Nanoseconds())/float64(r.N))
			allocs = max(allocs, r.AllocsPerOp())
		}
		fmt.Printf("%s rounds: %.1f ns\n", name, ns)
		slices.Sort(ns)
		fmt.Printf("BENCH %s_ns %.1f ns\n", name, ns[len(ns)/2])
		fmt.Printf("BENCH %s_allocs %d allocs\n", name, allocs)
	}
	report("residency_decide", e.Decide, &pre)
	report("residency_decide_uncached", e.Decide, &f)
	report("residency_decide_reference", e.ReferenceDecide, &f)

	// The same fifty classes reading one header name (x-data-class: rN),
	// as policies that tell classes apart by a header's value are
	// written: the engine looks the name up rather than walking the
	// request's headers.
	one, err := sovereignty.Compile("bench-one-header.yaml", []byte(benchPolicyHeaders(func(int) string { return "x-data-class" })))
	if err != nil {
		t.Fatal(err)
	}
	oneFlow := f
	oneFlow.Headers = http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8"}, "X-Data-Class": {"r3"}}
	oneFlow.Service = one.ServiceClasses(f.Namespace, f.Name, f.Labels)
	if d := one.Decide(&oneFlow, c); !d.Allow || d.Rule.ID != "class:class-3" || d != one.ReferenceDecide(&oneFlow, c) {
		t.Fatalf("benchmark flow decided %+v, the reference %+v", d, one.ReferenceDecide(&oneFlow, c))
	}
	report("residency_decide_one_header", one.Decide, &oneFlow)
}
