package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/identity"
)

// TestCATrustAndRevocationCommands drives `strait ca trust` and `strait
// ca revoke | revocations` against a dev federation: another domain is
// trusted for one cluster, listed and removed; the own domain's record
// cannot be deleted; a serial (in any spelling) and a SPIFFE ID (in the
// legacy form) are revoked and listed canonically.
func TestCATrustAndRevocationCommands(t *testing.T) {
	_, d := startDev(t)
	alice := d.Info().Clusters[0].CLIConfig
	partner, err := identity.NewCA("partner.example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pem := filepath.Join(t.TempDir(), "partner.pem")
	if err := os.WriteFile(pem, partner.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(wantCode int, want string, args ...string) string {
		t.Helper()
		out, stderr, code := runStrait(t, nil, append(args, "--config", alice)...)
		if code != wantCode || !strings.Contains(out+stderr, want) {
			t.Fatalf("strait %s: exit %d (want %d), out %q, err %q; want %q", strings.Join(args, " "), code, wantCode, out, stderr, want)
		}
		return out
	}
	run(0, "trust partner.example: 1 root(s) for clusters p1 at index", "ca", "trust", "add", "--domain", "partner.example", "--ca", pem, "--clusters", "p1")
	out := run(0, "partner.example", "ca", "trust", "list")
	if !strings.Contains(out, "p1") || !strings.Contains(out, "strait federation CA partner.example") {
		t.Fatalf("trust list:\n%s", out)
	}
	run(2, "never deleted", "ca", "trust", "remove", "--domain", "strait.local")
	run(2, "speaks for every cluster", "ca", "trust", "add", "--domain", "strait.local", "--ca", pem, "--clusters", "a")

	run(0, "revoked abc at index", "ca", "revoke", "--serial", "00:0A:BC", "--reason", "key leaked")
	run(0, "revoked spiffe://strait.local/gateway/region/eu-west/cluster/x at index", "ca", "revoke", "--id", "spiffe://strait.local/region/eu-west/cluster/x")
	run(2, "exactly one of --serial and --id", "ca", "revoke")
	run(2, "--id", "ca", "revoke", "--id", "https://example.org/")
	out = run(0, "serial abc", "ca", "revocations")
	if !strings.Contains(out, "key leaked") || !strings.Contains(out, "spiffe://strait.local/gateway/region/eu-west/cluster/x") || !strings.Contains(out, "operator/dev") {
		t.Fatalf("revocations:\n%s", out)
	}

	run(0, "last root removed, record deleted", "ca", "trust", "remove", "--domain", "partner.example", "--ca", pem)
	if out := run(0, "DOMAIN", "ca", "trust", "list"); strings.Contains(out, "partner.example") {
		t.Fatalf("partner.example still listed:\n%s", out)
	}
}
