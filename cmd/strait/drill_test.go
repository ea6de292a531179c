package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `strait drill validate` prints one line per valid file, the problems of
// every invalid one, and exits 2 when any file is invalid, as `strait
// policy check` does.
func TestDrillValidateGolden(t *testing.T) {
	const lib = "../../deploy/examples/drills/"
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"drill-validate-valid.txt", []string{"drill", "validate", lib + "lose-a-cluster.yaml", lib + "rolling-restart.yaml"}, 0},
		{"drill-validate-invalid.txt", []string{"drill", "validate", lib + "lose-a-region.yaml", "testdata/bad-drill.yaml"}, 2},
		{"drill-validate-missing.txt", []string{"drill", "validate", "testdata/no-such-drill.yaml"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runStrait(t, nil, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, stderr)
			}
			golden(t, tc.name, out+stderr)
		})
	}
}

func TestDrillValidateNeedsAFile(t *testing.T) {
	if _, stderr, code := runStrait(t, nil, "drill", "validate"); code == 0 {
		t.Errorf("drill validate without a file: exit 0\n%s", stderr)
	}
}

// `strait drill report` prints the summary of a result and exits 1 when
// the drill failed; a file that is not a result exits 2 and names the file.
func TestDrillReportGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"drill-report-fail.txt", []string{"drill", "report", "testdata/drill-result-fail.json"}, 1},
		{"drill-report-pass.txt", []string{"drill", "report", "testdata/drill-result-pass.json"}, 0},
		{"drill-report-badjson.txt", []string{"drill", "report", "testdata/drill-result-badjson.json"}, 2},
		{"drill-report-version.txt", []string{"drill", "report", "testdata/drill-result-version.json"}, 2},
		{"drill-report-missing.txt", []string{"drill", "report", "testdata/no-such-result.json"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runStrait(t, nil, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, stderr)
			}
			golden(t, tc.name, out+stderr)
		})
	}
}

// --html and --junit write the files (and no summary); the exit code still
// says whether the drill passed.
func TestDrillReportWritesFiles(t *testing.T) {
	dir := t.TempDir()
	html, junit := filepath.Join(dir, "r.html"), filepath.Join(dir, "r.xml")
	out, stderr, code := runStrait(t, nil, "drill", "report", "testdata/drill-result-fail.json", "--html", html, "--junit", junit)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
	}
	if want := "wrote " + html + "\nwrote " + junit + "\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), "<svg"); n != 2 {
		t.Errorf("html has %d charts, want 2", n)
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var suites struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("junit: %v\n%s", err, b)
	}
	if len(suites.Suites) != 1 || suites.Suites[0].Tests != 2 || suites.Suites[0].Failures != 1 {
		t.Errorf("junit suites %+v, want one with 2 tests, 1 failure", suites.Suites)
	}
}

// `strait drill validate --federation` checks the federation file and
// that each drill names only what it has; the library fits the
// multicloud example's federation.
func TestDrillValidateFederation(t *testing.T) {
	const lib = "../../deploy/examples/drills/"
	fed := "../../deploy/examples/multicloud/federation.yaml"
	files, _ := filepath.Glob(lib + "*.yaml")
	out, stderr, code := runStrait(t, nil, append([]string{"drill", "validate", "--federation", fed}, files...)...)
	if code != 0 || !strings.Contains(out, "federation.yaml: valid federation: 4 clusters") || strings.Count(out, ": valid drill ") != len(files) {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	// A drill of the dev federation names clusters the example lacks.
	out, stderr, code = runStrait(t, nil, "drill", "validate", "--federation", fed, lib+"dev/lose-eu-west-1.yaml")
	if code != 2 || !strings.Contains(stderr, "no cluster eu-central-1 in the federation") {
		t.Errorf("exit %d, want 2 naming the missing cluster\n%s%s", code, out, stderr)
	}
}

// `strait drill run` refuses to start without a federation, or on one it
// cannot use, before doing anything.
func TestDrillRunRefuses(t *testing.T) {
	const drillFile = "../../deploy/examples/drills/lose-a-cluster.yaml"
	bad := filepath.Join(t.TempDir(), "fed.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: strait.io/v1\nkind: Federation\nclusters: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no federation", []string{"drill", "run", drillFile}, "--federation FILE is required"},
		{"empty federation", []string{"drill", "run", drillFile, "--federation", bad}, "clusters: expected at least one cluster"},
		{"token missing", []string{"drill", "run", drillFile, "--federation", "../../deploy/examples/multicloud/federation.yaml"}, "adminTokenFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runStrait(t, []string{"STRAIT_FEDERATION="}, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want 2 with %q\n%s", code, tc.want, stderr)
			}
		})
	}
}
