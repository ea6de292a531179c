package sovereignty_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/internal/metricstest"
	"github.com/straitmesh/strait/sovereignty"
)

func TestAuditRecordsAreJSONLines(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	clock := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a, err := sovereignty.NewAuditor(sovereignty.AuditorOptions{Writer: &buf, Cluster: "us-east-1", Region: "us-east",
		Registerer: reg, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	e := mustCompile(t, decisionPolicy)
	f := sovereignty.Flow{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu"}, SourceRegion: "us-east"}
	c := sovereignty.Candidate{Cluster: "eu-west-1", Region: "eu-west"}
	d := e.Decide(&f, c)
	a.Count(d)
	a.Refused("outbound", 403)
	pol := sovereignty.PolicyInfo{Name: e.Name(), Version: 7, Digest: e.Digest(), Source: "file:/p.yaml"}
	a.Write(sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionDeny, Direction: "outbound", Entry: "connect",
		Flow:   &sovereignty.FlowInfo{Service: "demo/ledger", Port: 8080, Protocol: "http", SourceCluster: "us-east-1", SourceRegion: "us-east", Classes: []string{"pii-eu"}},
		Status: 403, Rule: d.Rule.ID, RuleAt: d.Rule.Path + " at " + d.Rule.At, Class: d.Rule.Class, Reason: d.Describe("us-east", c),
		Candidates: []sovereignty.CandidateInfo{{Cluster: "eu-west-1", Region: "eu-west", Decision: "deny", Rule: d.Rule.ID}}, Policy: pol})
	a.PolicyApplied(pol)
	a.PolicyRejected(pol, "file:/p.yaml", errors.New("invalid policy p.yaml (1 problem)"))

	sc := bufio.NewScanner(&buf)
	var recs []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	deny := recs[0]
	for k, want := range map[string]any{"time": "2025-03-01T12:00:00Z", "kind": "decision", "gateway": "us-east-1", "region": "us-east",
		"decision": "deny", "rule": "class:pii-eu", "class": "pii-eu", "status": float64(403)} {
		if deny[k] != want {
			t.Errorf("deny record %s = %v, want %v", k, deny[k], want)
		}
	}
	if p := deny["policy"].(map[string]any); p["version"] != float64(7) || !strings.HasPrefix(p["digest"].(string), "sha256:") {
		t.Errorf("policy %v", p)
	}
	if recs[1]["decision"] != "applied" || recs[2]["decision"] != "rejected" || !strings.Contains(recs[2]["error"].(string), "1 problem") {
		t.Errorf("policy records %v / %v", recs[1], recs[2])
	}

	if got := valueOf(t, reg, "strait_residency_decisions_total", map[string]string{"decision": "deny", "class": "pii-eu", "rule": "class:pii-eu"}); got != 1 {
		t.Errorf("decisions_total{deny,pii-eu} = %v", got)
	}
	for name, want := range map[string]float64{
		"strait_residency_policy_version":           7,
		"strait_residency_audit_records_total":      3,
		"strait_residency_policy_updates_total":     2,
		"strait_residency_refused_flows_total":      1,
		"strait_residency_audit_write_errors_total": 0,
	} {
		if got := sum(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := sum(t, reg, "strait_residency_policy_version"); n != 0 {
		t.Errorf("metrics still registered after Close")
	}
}

func TestAuditFileRotates(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "audit", "residency.jsonl")
	a, err := sovereignty.NewAuditor(sovereignty.AuditorOptions{Config: sovereignty.AuditConfig{File: file, MaxSizeMB: 1, MaxBackups: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	reason := strings.Repeat("r", 1000)
	for range 2500 { // ~2.6 MB: at least two rotations
		a.Write(sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionDeny, Reason: reason})
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files %v, want the live file and 2 backups", names)
	}
	for _, e := range entries {
		info, _ := e.Info()
		if info.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MB limit", e.Name(), info.Size())
		}
		data, _ := os.ReadFile(filepath.Join(filepath.Dir(file), e.Name()))
		for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if !json.Valid(line) {
				t.Fatalf("%s line %d is not a whole JSON record", e.Name(), i+1)
			}
		}
	}
}

func TestAuditFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sovereignty.NewAuditor(sovereignty.AuditorOptions{Config: sovereignty.AuditConfig{File: filepath.Join(blocker, "audit.jsonl")}})
	if err == nil || !strings.Contains(err.Error(), "audit file") {
		t.Fatalf("got %v", err)
	}
}

func valueOf(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	return metricstest.Sum(t, reg, name, want)
}

func sum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metricstest.Sum(t, reg, name, nil)
}
