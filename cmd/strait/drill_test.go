package main

import "testing"

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
