package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/federation/state"
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

// TestCAIntermediateAndToken: strait ca intermediate signs the voters'
// intermediate with the offline root; strait ca token, as an operator,
// writes a join token's record (the hash of its secret only) to a voter
// that holds the intermediate and prints the token, with which a new
// gateway obtains its certificate once.
func TestCAIntermediateAndToken(t *testing.T) {
	dir := t.TempDir()
	caDir, _ := caWithGateway(t, dir, "", "")
	interDir, voterDir, opsDir := filepath.Join(dir, "inter"), filepath.Join(dir, "voter"), filepath.Join(dir, "ops")
	out, stderr, code := runStrait(t, nil, "ca", "intermediate", "--dir", caDir, "--out", interDir, "--validity", "720h")
	if code != 0 || !strings.Contains(out, "intermediate CA for trust domain strait.local") {
		t.Fatalf("ca intermediate: exit %d, %q %q", code, out, stderr)
	}
	if _, _, code := runStrait(t, nil, "ca", "intermediate", "--dir", caDir, "--out", interDir); code == 0 {
		t.Fatal("ca intermediate replaced an intermediate key")
	}
	for _, args := range [][]string{
		{"--cluster", "eu-west-1", "--region", "eu-west", "--voter", "--out", voterDir},
		{"--operator", "alice", "--out", opsDir},
	} {
		if _, stderr, code := runStrait(t, nil, append([]string{"ca", "issue", "--dir", caDir}, args...)...); code != 0 {
			t.Fatalf("ca issue %v: %s", args, stderr)
		}
	}
	voter, err := identity.LoadFiles(filepath.Join(voterDir, "cert.pem"), filepath.Join(voterDir, "key.pem"), filepath.Join(voterDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := state.DefaultConfig()
	cfg.DataDir, cfg.Bind, cfg.Voter, cfg.BootstrapExpect = filepath.Join(dir, "state"), "127.0.0.1:0", true, 1
	cfg.CA.Intermediate, cfg.CA.IntermediateKey = filepath.Join(interDir, "intermediate.pem"), filepath.Join(interDir, "intermediate-key.pem")
	if err := cfg.Validate("state."); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(cfg, state.Options{Name: "gw0", TrustDomain: "strait.local", Cluster: "eu-west-1", Region: "eu-west",
		ControlAddr: ln.Addr().String(), Identity: voter, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := state.NewControlServer(st, voter)
	go srv.Serve(ln)
	defer srv.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !st.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	tls := []string{"--control", ln.Addr().String(), "--cert", filepath.Join(opsDir, "cert.pem"), "--key", filepath.Join(opsDir, "key.pem"), "--ca", filepath.Join(opsDir, "ca.pem")}
	out, stderr, code = runStrait(t, nil, append([]string{"ca", "token", "--cluster", "us-east-1", "--region", "us-east", "--ttl", "10m"}, tls...)...)
	if code != 0 || !strings.Contains(stderr, "for spiffe://strait.local/gateway/region/us-east/cluster/us-east-1") {
		t.Fatalf("ca token: exit %d, %q %q", code, out, stderr)
	}
	tok, err := identity.ParseToken(out)
	if err != nil {
		t.Fatalf("ca token printed %q: %v", out, err)
	}
	rec, ok := st.View().Get(state.KindJoinToken, tok.ID)
	if !ok || !strings.Contains(rec.Value, tok.SecretHash()) || strings.Contains(rec.Value, tok.Secret) || !strings.Contains(rec.By, "operator/alice") {
		t.Fatalf("token record %+v: want the secret's hash only, by alice", rec)
	}
	for _, args := range [][]string{
		{"--cluster", "Bad Name", "--region", "us-east"},
		{"--cluster", "us-east-1", "--region", "us-east", "--ttl", "720h"},
	} {
		if _, stderr, code := runStrait(t, nil, append(append([]string{"ca", "token"}, args...), tls...)...); code != 2 {
			t.Errorf("ca token %v: exit %d, %q; want a usage error", args, code, stderr)
		}
	}

	// The new gateway: no certificate, the token, the voter's address.
	id := identity.ID{TrustDomain: "strait.local", Role: identity.RoleGateway, Region: "us-east", Cluster: "us-east-1"}
	b := identity.NewBundleFor(id, nil)
	is, err := state.NewCAIssuer(state.CAIssuerConfig{Bundle: b, Servers: []string{ln.Addr().String()}, Token: out, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	csr := func() *x509.CertificateRequest {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URI()}}, key)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := x509.ParseCertificateRequest(der)
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	issued, err := is.Issue(ctx, csr())
	if err != nil {
		t.Fatalf("first certificate with the token: %v", err)
	}
	chain, err := identity.ParsePEMCertificates(issued.Certificate)
	if err != nil || len(chain) != 2 || chain[0].URIs[0].String() != id.String() || b.Trust() == nil {
		t.Fatalf("issued %d certificates (%v); want %s and the intermediate, and the bundle trusting the root", len(chain), err, id)
	}
	if _, err := is.Issue(ctx, csr()); !errors.Is(err, state.ErrDenied) {
		t.Fatalf("the token a second time: %v; want a refusal", err)
	}
}
