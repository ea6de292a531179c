package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/straitmesh/strait/identity"
)

// TestCAIssuesRoles: strait ca issue writes gateway, voter and operator
// certificates whose SPIFFE IDs name their role, and refuses mixed flags.
func TestCAIssuesRoles(t *testing.T) {
	dir := t.TempDir()
	caDir, _ := caWithGateway(t, dir, "", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "a", "--region", "eu-west"}, "spiffe://strait.local/gateway/region/eu-west/cluster/a"},
		{[]string{"--cluster", "a", "--region", "eu-west", "--voter"}, "spiffe://strait.local/voter/region/eu-west/cluster/a"},
		{[]string{"--operator", "alice"}, "spiffe://strait.local/operator/alice"},
		{[]string{"--operator", "bob", "--scope", "failover,export"}, "spiffe://strait.local/operator/bob/scope/failover,export"},
	} {
		out := filepath.Join(dir, strings.Join(tc.args, "_"))
		stdout, stderr, code := runStrait(t, nil, append([]string{"ca", "issue", "--dir", caDir, "--out", out}, tc.args...)...)
		if code != 0 || !strings.HasPrefix(stdout, tc.want+": ") {
			t.Errorf("ca issue %v: exit %d, %q %q; want %s", tc.args, code, stdout, stderr, tc.want)
			continue
		}
		b, err := identity.LoadFiles(filepath.Join(out, "cert.pem"), filepath.Join(out, "key.pem"), filepath.Join(out, "ca.pem"))
		if err != nil || b.ID.String() != tc.want {
			t.Errorf("ca issue %v wrote %v (%v), want %s", tc.args, b, err, tc.want)
		}
	}
	for _, args := range [][]string{
		{"--operator", "alice", "--cluster", "a"},
		{"--operator", "alice", "--scope", "policies"},
		{"--cluster", "a", "--region", "eu-west", "--scope", "policy"},
		{"--operator", "Alice Smith"},
		{},
	} {
		if _, stderr, code := runStrait(t, nil, append([]string{"ca", "issue", "--dir", caDir, "--out", filepath.Join(dir, "x")}, args...)...); code != 2 && code != 1 || stderr == "" {
			t.Errorf("ca issue %v: exit %d, %q; want a refusal", args, code, stderr)
		}
	}
}
