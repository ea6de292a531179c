package main

import (
	"strings"
	"testing"
)

// TestProbeGRPCThroughDevGateways runs `strait probe grpc` against the
// demo services of a dev federation through its gateways' import ports:
// a marked call from eu-west-1 is served in eu-central, the same call from
// us-east-1 is refused by residency, and bad arguments exit 2.
func TestProbeGRPCThroughDevGateways(t *testing.T) {
	_, d := startDev(t)
	euw := d.Gateway("eu-west-1").ImportAddrs()["demo/profile:8080"]
	use := d.Gateway("us-east-1").ImportAddrs()["demo/profile:8080"]
	if euw == "" || use == "" {
		t.Fatalf("no demo/profile import ports: eu-west-1 %q, us-east-1 %q", euw, use)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // the whole of it
		stderr string // contained in it
	}{
		{"marked from eu-west-1 stays in the EU", []string{euw, "--header", "x-data-residency=eu"},
			0, "SERVING  served by eu-central-1 (eu-central)\n", ""},
		{"marked, the service by name", []string{euw, "--service", "demo/profile", "--header", "X-Data-Residency: eu", "--timeout", "10s"},
			0, "SERVING  served by eu-central-1 (eu-central)\n", ""},
		{"marked from us-east-1 is refused", []string{use, "--header", "x-data-residency=eu"},
			1, "", "strait: PermissionDenied: residency: "},
		{"unmarked from us-east-1 is served locally", []string{use},
			0, "SERVING  served by us-east-1 (us-east)\n", ""},
		{"a service the health server does not know", []string{euw, "--service", "demo/nothing", "--header", "x-data-residency=eu"},
			1, "", "strait: NotFound: unknown service"},
		{"nothing listens", []string{"127.0.0.1:1", "--timeout", "2s"},
			1, "", "strait: Unavailable: "},
		{"no address", nil, 2, "", "want one HOST:PORT"},
		{"address without port", []string{"127.0.0.1"}, 2, "", `address "127.0.0.1": want HOST:PORT`},
		{"header without value", []string{euw, "--header", "x-data-residency"}, 2, "", `--header: want K=V, found "x-data-residency"`},
		{"zero timeout", []string{euw, "--timeout", "0s"}, 2, "", "--timeout: want a positive duration"},
		{"unknown flag", []string{euw, "--no-such-flag"}, 2, "", "unknown flag: --no-such-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runStrait(t, nil, append([]string{"probe", "grpc"}, tc.args...)...)
			if code != tc.code || out != tc.stdout || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, want %d\nstdout %q, want %q\nstderr %q, want it to contain %q", code, tc.code, out, tc.stdout, stderr, tc.stderr)
			}
		})
	}
}
