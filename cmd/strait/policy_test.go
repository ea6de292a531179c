package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straitmesh/strait/lab"
)

var update = flag.Bool("update", false, "rewrite the golden files of CLI output")

const examplePolicy = "../../deploy/examples/residency.yaml"

// golden compares out with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, out string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/strait -run %s -update)", err, t.Name())
	}
	if out != string(want) {
		t.Errorf("output differs from %s (-update rewrites it):\n--- got\n%s\n--- want\n%s", path, out, want)
	}
}

func TestPolicyCommandsGolden(t *testing.T) {
	topo := []string{"--policy", examplePolicy, "--topology", "testdata/topology.yaml"}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"check-valid.txt", []string{"policy", "check", examplePolicy, "testdata/west-only.yaml"}, 0},
		{"check-invalid.txt", []string{"policy", "check", "testdata/bad-policy.yaml"}, 2},
		{"explain-ledger-from-us-east-1.txt", append([]string{"policy", "explain", "--service", "demo/ledger", "--from", "us-east-1"}, topo...), 0},
		{"explain-ledger-from-eu-central-1.txt", append([]string{"policy", "explain", "--service", "demo/ledger", "--from", "eu-central-1"}, topo...), 0},
		{"explain-profile-marked-from-eu-west-1.txt", append([]string{"policy", "explain", "--service", "demo/profile", "--from", "eu-west-1", "--header", "x-data-residency=eu"}, topo...), 0},
		{"explain-profile-marked-eu-central-down.txt", append([]string{"policy", "explain", "--service", "demo/profile", "--from", "eu-west-1", "--header", "x-data-residency=eu", "--fail", "eu-central-1"}, topo...), 0},
		{"explain-profile-unreadable-from-eu-west-1.txt", append([]string{"policy", "explain", "--service", "demo/profile", "--from", "eu-west-1", "--unreadable"}, topo...), 0},
		{"explain-echo-unreadable-from-us-east-1.txt", append([]string{"policy", "explain", "--service", "demo/echo", "--from", "us-east-1", "--unreadable"}, topo...), 0},
		{"simulate-fail-eu-central.txt", append([]string{"policy", "simulate", "--fail", "eu-central"}, topo...), 0},
		{"simulate-unreadable-fail-eu-central.txt", append([]string{"policy", "simulate", "--unreadable", "--fail", "eu-central"}, topo...), 0},
		{"diff-west-only.txt", []string{"policy", "diff", examplePolicy, "testdata/west-only.yaml", "--topology", "testdata/topology.yaml"}, 0},
		{"diff-same.txt", []string{"policy", "diff", examplePolicy, examplePolicy, "--topology", "testdata/topology.yaml"}, 0},
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

func TestPolicyUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no topology", []string{"policy", "explain", "--service", "demo/ledger", "--from", "x", "--policy", examplePolicy}, "give either --topology FILE or --admin ADDR"},
		{"unknown source cluster", []string{"policy", "explain", "--service", "demo/ledger", "--from", "mars-1", "--policy", examplePolicy, "--topology", "testdata/topology.yaml"}, "--from mars-1: no such cluster"},
		{"bad service", []string{"policy", "explain", "--service", "ledger", "--from", "x", "--policy", examplePolicy, "--topology", "testdata/topology.yaml"}, "--service: want namespace/name"},
		{"unknown failure", []string{"policy", "simulate", "--fail", "apac", "--policy", examplePolicy, "--topology", "testdata/topology.yaml"}, "--fail apac: no cluster or region"},
		{"invalid topology", []string{"policy", "simulate", "--policy", examplePolicy, "--topology", "testdata/bad-policy.yaml"}, "testdata/bad-policy.yaml:1:1: apiVersion: unknown key"},
		{"diff without old", []string{"policy", "diff", examplePolicy, "--topology", "testdata/topology.yaml"}, "give OLD and NEW"},
		{"unreadable with a header", []string{"policy", "explain", "--service", "demo/profile", "--from", "eu-west-1", "--unreadable", "--header", "x-data-residency=eu", "--policy", examplePolicy, "--topology", "testdata/topology.yaml"},
			"--unreadable and --header conflict"},
		{"unreadable is not a diff flag", []string{"policy", "diff", examplePolicy, examplePolicy, "--unreadable", "--topology", "testdata/topology.yaml"}, "unknown flag: --unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runStrait(t, nil, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

// TestPolicyCommandsLive runs the tooling against a running federation:
// the topology from /v1/status, the policy in force from the gateway.
func TestPolicyCommandsLive(t *testing.T) {
	_, d := startDev(t)
	infoFile := filepath.Join(t.TempDir(), "info.json")
	if err := lab.WriteInfo(infoFile, d.Info()); err != nil {
		t.Fatal(err)
	}
	euc := d.Gateway("eu-central-1").AdminAddr()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"explain from the tour", []string{"policy", "explain", "--admin", euc, "--service", "demo/ledger", "--from", "us-east-1"},
			[]string{"Policy:  default (version ", "matched by spec.classes[0].match.services[0] (data-class=pii-eu)", "refused, 403 Forbidden", "rule class:pii-eu"}},
		{"explain defaults to the gateway's cluster", []string{"policy", "explain", "--admin", euc, "--service", "demo/ledger"},
			[]string{"from eu-central-1", "Result:  goes to eu-west-1; fails over to eu-west-2"}},
		{"simulate from the tour", []string{"policy", "simulate", "--admin", euc, "--fail", "eu-central"},
			[]string{"demo/profile  eu-west-1  X-Data-Residency: eu    eu-central-1  REFUSED 503 *", "refused with allowed clusters down (503)"}},
		{"diff against the policy in force", []string{"policy", "diff", "testdata/west-only.yaml", "--admin", euc},
			[]string{"Old:     default (version ", "demo/ledger   eu-central-1  tcp"}},
		{"a dev info file is a topology", []string{"policy", "explain", "--topology", infoFile, "--policy", examplePolicy, "--service", "demo/ledger", "--from", "us-east-1"},
			[]string{"refused, 403 Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runStrait(t, nil, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
