package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straitmesh/strait/drill"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestSummaryGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *drill.Result
		last string
	}{
		{"summary.golden", sampleResult(), "FAIL"},
		{"summary-aborted.golden", abortedResult(), "FAIL"},
		{"summary-pass.golden", passing(sampleResult()), "PASS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Summary(&b, tc.r); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.Bytes())
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if got := lines[len(lines)-1]; got != tc.last {
				t.Errorf("last line %q, want %q", got, tc.last)
			}
		})
	}
}

// A document that says it passed while a verdict failed reads as a
// failure.
func TestPassedDoesNotTrustPassAlone(t *testing.T) {
	r := sampleResult()
	r.Pass = true
	if Passed(r) {
		t.Error("Passed with a failing verdict")
	}
	if !Passed(passing(sampleResult())) {
		t.Error("a passing result did not pass")
	}
	a := passing(abortedResult())
	if Passed(a) {
		t.Error("an aborted result passed")
	}
}

// passing turns every verdict of r into a pass.
func passing(r *drill.Result) *drill.Result {
	for i := range r.Verdicts {
		r.Verdicts[i].Pass = true
		r.Verdicts[i].Detail = ""
	}
	r.Pass = r.Aborted == nil
	return r
}
