package sovereignty_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/straitmesh/strait/internal/fuzzseed"
	"github.com/straitmesh/strait/sovereignty"
)

// FuzzCompile feeds arbitrary documents to the policy compiler: it never
// panics, a failure is an *Error whose every problem names the file, and a
// policy that compiles decides every flow without panicking.
func FuzzCompile(f *testing.F) {
	fuzzseed.Files(f, "testdata/seed/*.yaml")
	f.Add([]byte(decisionPolicy))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := sovereignty.Compile("fuzz.yaml", data)
		if refused(t, "Compile", err) {
			return
		}
		flows := []sovereignty.Flow{
			{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"}, SourceRegion: "eu-west"},
			{Namespace: "a", Name: "b", SourceRegion: "x", SourceNamespace: "y", Headers: http.Header{"X-Data-Residency": {"eu", "us"}}},
			{Namespace: "demo", Name: "profile", SourceRegion: "eu-west", Unreadable: true},
		}
		for _, r := range append(e.Regions(), "nowhere") {
			for i := range flows {
				d := e.Decide(&flows[i], sovereignty.Candidate{Cluster: "c", Region: r})
				if d.Rule == nil {
					t.Fatal("decision without a rule")
				}
				_ = d.Describe(flows[i].SourceRegion, sovereignty.Candidate{Cluster: "c", Region: r})
			}
		}
		_, _ = e.CatalogRegions("demo", "ledger", map[string]string{"data-class": "pii-eu"})
		_ = e.ClassList()
		_ = e.Matched(&flows[2])
	})
}

// FuzzParseTopology: the topology reader never panics; a failure is an
// *Error whose every problem names the file, a success has named,
// regioned clusters.
func FuzzParseTopology(f *testing.F) {
	fuzzseed.Files(f, "testdata/topology/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := sovereignty.ParseTopology("fuzz.yaml", data)
		if refused(t, "ParseTopology", err) {
			return
		}
		for _, c := range top.Clusters {
			if c.Name == "" || c.Region == "" {
				t.Fatalf("cluster without name or region: %+v", c)
			}
		}
		_ = top.Services()
	})
}

// refused reports whether fn refused the fuzz document; a refusal must be
// an *Error whose every problem names the file and says what is wrong.
func refused(t *testing.T, fn string, err error) bool {
	t.Helper()
	if err == nil {
		return false
	}
	var pe *sovereignty.Error
	if !errors.As(err, &pe) || len(pe.Problems) == 0 {
		t.Fatalf("%s returned %T with no problems: %v", fn, err, err)
	}
	for _, p := range pe.Problems {
		if p.File != "fuzz.yaml" || p.Msg == "" {
			t.Fatalf("problem without file or message: %+v", p)
		}
	}
	_ = pe.Error()
	return true
}
