package report

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadFileRoundTrip(t *testing.T) {
	want := sampleResult()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "result.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("result read back differs from the one written")
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"not json", `{"apiVersion": `, "invalid drill result"},
		{"no apiVersion", `{"drill": "x"}`, `apiVersion: missing, expected "strait.io/v1"`},
		{"other apiVersion", `{"apiVersion": "strait.io/v0"}`, `found "strait.io/v0"`},
		{"unknown field", `{"apiVersion": "strait.io/v1", "verdict": []}`, `unknown field "verdict"`},
		{"wrong type at a line", "{\"apiVersion\": \"strait.io/v1\",\n\"pass\": 1}", "line 2, column"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

// Whatever the bytes, Parse returns a result or an error, and a result it
// returns renders in every form.
func FuzzParse(f *testing.F) {
	b, _ := json.Marshal(abortedResult())
	f.Add(b)
	f.Add([]byte(`{"apiVersion": "strait.io/v1", "traffic": [{"seconds": [{"t": -5, "p50": -1}]}], "steps": [{"done": -1}]}`))
	f.Add([]byte(`{"apiVersion": "strait.io/v1"}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		r, err := Parse(doc)
		if err != nil {
			return
		}
		var sink strings.Builder
		if err := Summary(&sink, r); err != nil {
			t.Fatal(err)
		}
		if err := JUnit(&sink, r); err != nil {
			t.Fatal(err)
		}
		if err := HTML(&sink, r); err != nil {
			t.Fatal(err)
		}
	})
}

// Extreme figures in a result still render.
func TestHTMLExtremeFigures(t *testing.T) {
	for _, doc := range []string{
		`{"apiVersion": "strait.io/v1", "ran": 1000000000, "traffic": [{"name": "t", "seconds": [{"t": 0, "requests": 1, "p50": 1e308, "p90": 1e308, "p99": 1e308}]}]}`,
		`{"apiVersion": "strait.io/v1", "ran": -1, "traffic": [{"name": "t", "seconds": [{"t": 4611686018427387904, "requests": 9223372036854775807, "ok": 9223372036854775807, "p50": 1e-300, "byRegion": {"r": 9223372036854775807}}]}], "steps": [{"name": "s", "kind": "kill", "done": -5, "undone": 9223372036854775807}]}`,
		`{"apiVersion": "strait.io/v1", "traffic": [{"name": "t"}], "steps": [{"name": "s", "kind": "restore", "done": 5}]}`,
	} {
		r, err := Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var sink strings.Builder
		if err := HTML(&sink, r); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}
