package drill_test

import (
	"errors"
	"testing"

	"github.com/straitmesh/strait/drill"
	"github.com/straitmesh/strait/internal/fuzzseed"
)

// FuzzParseDrill: Parse never panics; a refusal is an *Error whose every
// problem names the file and says what is wrong; an accepted drill keeps
// the guarantees of the package doc.
func FuzzParseDrill(f *testing.F) {
	fuzzseed.Files(f, "testdata/valid/*.yaml")
	fuzzseed.Files(f, "testdata/invalid/*.yaml")
	fuzzseed.Files(f, "../deploy/examples/drills/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := drill.Parse("fuzz.yaml", data)
		if err != nil {
			var de *drill.Error
			if !errors.As(err, &de) || len(de.Problems) == 0 {
				t.Fatalf("Parse returned %T with no problems: %v", err, err)
			}
			for _, p := range de.Problems {
				if p.File != "fuzz.yaml" || p.Msg == "" {
					t.Fatalf("problem without file or message: %+v", p)
				}
			}
			_ = de.Error()
			return
		}
		if d.Name == "" || d.Duration <= 0 || len(d.Traffic) == 0 {
			t.Fatalf("accepted drill without name, duration or traffic: %+v", d)
		}
		names := map[string]drill.FaultKind{}
		for i, s := range d.Timeline {
			if s.Name == "" || s.At < 0 || s.At >= d.Duration || i > 0 && s.At < d.Timeline[i-1].At {
				t.Fatalf("step %d out of place: %+v", i, s)
			}
			if _, dup := names[s.Name]; dup {
				t.Fatalf("step name %q twice", s.Name)
			}
			if s.Kind == drill.Restore {
				if k, ok := names[s.Restores]; !ok || k == drill.Restore {
					t.Fatalf("restore of %q, which is not an earlier fault", s.Restores)
				}
			}
			names[s.Name] = s.Kind
		}
		for _, tr := range d.Traffic {
			if tr.Rate < 1 || tr.Rate > drill.MaxRate || len(tr.From) == 0 || tr.To.Port == 0 {
				t.Fatalf("accepted traffic out of bounds: %+v", tr)
			}
		}
	})
}

// FuzzParseFederation: ParseFederation never panics; a refusal names the
// file; an accepted federation has clusters, each with gateways that have
// admin addresses.
func FuzzParseFederation(f *testing.F) {
	fuzzseed.Files(f, "../deploy/examples/multicloud/federation.yaml")
	f.Add([]byte(fedDoc))
	f.Fuzz(func(t *testing.T, data []byte) {
		fed, err := drill.ParseFederation("fuzz.yaml", data)
		if err != nil {
			var de *drill.Error
			if !errors.As(err, &de) || len(de.Problems) == 0 {
				t.Fatalf("ParseFederation returned %T with no problems: %v", err, err)
			}
			for _, p := range de.Problems {
				if p.File != "fuzz.yaml" || p.Msg == "" {
					t.Fatalf("problem without file or message: %+v", p)
				}
			}
			return
		}
		if len(fed.Clusters) == 0 {
			t.Fatal("accepted a federation without clusters")
		}
		for _, c := range fed.Clusters {
			if c.Name == "" || c.Region == "" || len(c.Gateways) == 0 {
				t.Fatalf("accepted cluster %+v", c)
			}
			for _, g := range c.Gateways {
				if g.Admin == "" || g.Name == "" {
					t.Fatalf("accepted gateway %+v", g)
				}
			}
		}
	})
}
