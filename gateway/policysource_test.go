package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

const goodPolicy = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: p}
spec:
  regionGroups: {eu: [eu-west, eu-central]}
  classes:
    - name: pii-eu
      allowedRegions: [eu]
      match: {services: [{labels: {data-class: pii-eu}}]}
`

func write(t *testing.T, path, body string) {
	t.Helper()
	// Write then rename, as editors and ConfigMap updates do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFilePolicySourceReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "residency.yaml")
	write(t, path, goodPolicy)
	s, err := gateway.NewFilePolicySource(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, v := s.Current(); v != 1 {
		t.Fatalf("version %d, want 1", v)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, v := s.Current(); v != 1 {
		t.Errorf("an unchanged file raised the version to %d", v)
	}
	write(t, path, strings.Replace(goodPolicy, "[eu]", "[eu-north]", 1))
	err = s.Reload()
	var pe *sovereignty.Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), path+":8:24: spec.classes[0].allowedRegions[0]: unknown region or group") {
		t.Fatalf("reload of an invalid file: %v", err)
	}
	e, v := s.Current()
	if v != 1 || e.Name() != "p" {
		t.Errorf("after a refused update: version %d", v)
	}
	if seq, at, rerr := s.LastRejection(); seq != 1 || at != 1 || rerr == nil {
		t.Errorf("rejection not reported with version 1 in force: %d %d %v", seq, at, rerr)
	}
	write(t, path, strings.Replace(goodPolicy, "name: p}", "name: p2}", 1))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if e, v := s.Current(); v != 2 || e.Name() != "p2" {
		t.Errorf("after a good update: %s version %d, want p2 version 2", e.Name(), v)
	}
}

func TestFilePolicySourceWatchesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "residency.yaml")
	write(t, path, goodPolicy)
	s, err := gateway.NewFilePolicySource(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	// The watcher subscribes in its own goroutine: write until it notices,
	// at most 5s.
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	write(t, path, strings.Replace(goodPolicy, "name: p}", "name: watched}", 1))
	for noticed := false; !noticed; {
		select {
		case <-s.Changes():
			noticed = true
		case <-tick.C:
			write(t, path, strings.Replace(goodPolicy, "name: p}", "name: watched}", 1)) // same content: one version
		case <-deadline:
			t.Fatal("no change noticed within 5s")
		}
	}
	if e, v := s.Current(); e.Name() != "watched" || v != 2 {
		t.Errorf("watched change: %s version %d", e.Name(), v)
	}
}

func startGateway(t *testing.T, cfg gateway.Config) (*gateway.Gateway, error) {
	t.Helper()
	return startGatewayWith(t, cfg, nil)
}

func startGatewayWith(t *testing.T, cfg gateway.Config, policy gateway.PolicySource) (*gateway.Gateway, error) {
	t.Helper()
	ca, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	role := identity.RoleGateway
	if cfg.State.Voter {
		role = identity.RoleVoter
	}
	cert, err := ca.IssueID(identity.ID{Role: role, Region: "eu-west", Cluster: "a"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := identity.NewBundle(cert, ca.Roots())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cluster, cfg.Region = "a", "eu-west"
	cfg.TLS = gateway.TLSConfig{Cert: "x", Key: "x", CA: "x"}
	def := gateway.DefaultConfig()
	if cfg.Listen.Data == "" || cfg.Listen.Data == def.Listen.Data {
		cfg.Listen = gateway.ListenConfig{Data: "127.0.0.1:0", Admin: "127.0.0.1:0", Connect: "127.0.0.1:0"}
	}
	if cfg.Gossip.Bind == "" || cfg.Gossip.Bind == def.Gossip.Bind {
		cfg.Gossip.Bind = "127.0.0.1:0"
	}
	cfg.Gossip.Profile, cfg.Gossip.NodeName = "local", "a"
	cfg.Gossip.Key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	g, err := gateway.Start(cfg, gateway.Options{Identity: b, Policy: policy})
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			g.Shutdown(ctx)
		})
	}
	return g, err
}

func TestGatewayRefusesToStartWithAnInvalidPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "residency.yaml")
	write(t, path, strings.Replace(goodPolicy, "match:", "mtch:", 1))
	cfg := gateway.DefaultConfig()
	cfg.Residency.Policy = path
	_, err := startGateway(t, cfg)
	var pe *sovereignty.Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), path+":9:7: spec.classes[0].mtch: unknown key (did you mean \"match\"?)") {
		t.Fatalf("Start: %v", err)
	}
}

// TestGatewayPolicyLifecycle: the gateway starts on its validated policy,
// keeps it through a refused update, takes a good one, and audits each.
func TestGatewayPolicyLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "residency.yaml")
	write(t, path, goodPolicy)
	cfg := gateway.DefaultConfig()
	cfg.Residency.Policy = path
	cfg.Residency.Audit.File = filepath.Join(dir, "audit", "residency.jsonl")
	g, err := startGateway(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	status := func() admin.ResidencyStatus {
		resp, err := http.Get("http://" + g.AdminAddr() + "/v1/residency")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st admin.ResidencyStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); !st.InForce || st.Policy.Version != 1 || st.Policy.Source != "file:"+path || len(st.Classes) != 1 {
		t.Fatalf("status %+v", st)
	}
	write(t, path, strings.Replace(goodPolicy, "[eu]", "[]", 1))
	if err := g.ReloadPolicy(); err == nil {
		t.Fatal("invalid policy reloaded")
	}
	if _, v := g.Policy(); v != 1 {
		t.Fatalf("version %d after a refused update", v)
	}
	write(t, path, strings.Replace(goodPolicy, "[eu]", "[eu-west]", 1))
	if err := g.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	if _, v := g.Policy(); v != 2 {
		t.Fatalf("version %d after a good update", v)
	}
	resp, err := http.Get("http://" + g.AdminAddr() + "/v1/residency/policy")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Strait-Policy-Version") != "2" {
		t.Errorf("policy endpoint version %q", resp.Header.Get("X-Strait-Policy-Version"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(cfg.Residency.Audit.File)
		var kinds []string
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r sovereignty.Record
			if json.Unmarshal([]byte(line), &r) == nil && r.Kind == sovereignty.KindPolicy {
				kinds = append(kinds, r.Decision+"@"+strings.TrimPrefix(r.Policy.Source, "file:"+path)+string(rune('0'+r.Policy.Version)))
			}
		}
		if strings.Join(kinds, ",") == "applied@1,rejected@1,applied@2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy audit records %v, want applied v1, rejected (v1 stays), applied v2", kinds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
