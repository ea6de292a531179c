package drill

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const judgeFed = `apiVersion: strait.io/v1
kind: Federation
clusters:
  - {name: eu-1, region: eu-west, gateways: [{admin: 127.0.0.1:1000, connect: 127.0.0.1:1001}]}
  - {name: eu-2, region: eu-west, gateways: [{admin: 127.0.0.1:2000, connect: 127.0.0.1:2001}]}
  - {name: de-1, region: eu-central, gateways: [{admin: 127.0.0.1:3000, connect: 127.0.0.1:3001}]}
  - {name: us-1, region: us-east, gateways: [{admin: 127.0.0.1:4000, connect: 127.0.0.1:4001}]}
`

const judgeDrill = `apiVersion: strait.io/v1
kind: Drill
metadata: {name: j}
duration: 40s
traffic:
  - {name: eu, from: [de-1], to: billing/ledger:8080, rate: 10, headers: {x-data-residency: eu}}
timeline:
  - {name: kill, at: 10s, kind: kill, cluster: eu-1}
  - {name: back, at: 30s, kind: restore, step: kill}
expect:
  services:
    - {service: billing/ledger:8080, maxFailoverTime: 2s, maxErrorRate: 5, maxAddedP99: 50ms}
  residency:
    - {class: pii-eu, neverReaches: [us-east]}
`

// judged runs judge over samples: eu-1 serves until the kill at 10s,
// requests fail for failAfter, then eu-2 serves (or us-1 when leak).
func judged(t *testing.T, drillDoc string, failFor time.Duration, leak bool, slow time.Duration) *Result {
	t.Helper()
	f, err := ParseFederation("fed.yaml", []byte(judgeFed))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse("j.yaml", []byte(drillDoc))
	if err != nil {
		t.Fatal(err)
	}
	plans, err := f.Plan(d, "t")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(1)
	res := &Result{Ran: 40 * time.Second, Steps: []StepRecord{{Name: "kill", Done: 10 * time.Second, Undone: 30 * time.Second}, {Name: "back", Done: 30 * time.Second}},
		Traffic: []TrafficResult{{Name: "eu", Service: "billing/ledger:8080", Classes: []ClassInfo{{Name: "pii-eu", Regions: []string{"eu-west", "eu-central"}}}}}}
	for at := 0 * time.Millisecond; at < 40*time.Second; at += 100 * time.Millisecond {
		s := Sample{Traffic: 0, From: "de-1", Start: at, Latency: 5 * time.Millisecond, Outcome: OK, Cluster: "eu-1", Region: "eu-west", Reporter: "responder"}
		switch {
		case at >= 10*time.Second && at < 10*time.Second+failFor:
			s.Outcome, s.Cluster, s.Region, s.Latency = Failed, "", "", 2*time.Second
		case at >= 10*time.Second && at < 30*time.Second:
			s.Cluster, s.Latency = "eu-2", slow
			if leak {
				s.Cluster, s.Region = "us-1", "us-east"
				res.Violations = append(res.Violations, Violation{At: at, Traffic: "eu", Class: "pii-eu", Region: "us-east", Cluster: "us-1", Source: "responder"})
			}
		}
		rec.add(s)
	}
	res.Traffic[0].Totals, res.Traffic[0].Seconds = rec.export(0, 40)
	judge(d, plans, res, rec)
	return res
}

func verdicts(res *Result) map[string]Verdict {
	out := map[string]Verdict{}
	for _, v := range res.Verdicts {
		out[v.Expectation] = v
	}
	return out
}

func TestJudgePasses(t *testing.T) {
	res := judged(t, judgeDrill, 1500*time.Millisecond, false, 6*time.Millisecond)
	if !res.Pass {
		t.Fatalf("failed: %+v", res.Verdicts)
	}
	if len(res.Failovers) != 1 {
		t.Fatalf("failovers %+v", res.Failovers)
	}
	fo := res.Failovers[0]
	// First success elsewhere: the request sent at 11.5s, ended 6ms later.
	if fo.Cluster != "eu-2" || fo.Time != 1506*time.Millisecond || fo.Step != "kill" {
		t.Errorf("failover %+v", fo)
	}
	v := verdicts(res)
	if got := v["billing/ledger:8080 maxErrorRate"]; got.Measured != "3.75% (15 of 400)" || !got.Pass {
		t.Errorf("error rate verdict %+v", got)
	}
	if got := v["pii-eu neverReaches [us-east]"]; got.Measured != "0 requests" || !got.Pass {
		t.Errorf("residency verdict %+v", got)
	}
	if got := v["billing/ledger:8080 maxAddedP99"]; !got.Pass {
		t.Errorf("p99 verdict %+v", got)
	}
}

func TestJudgeFails(t *testing.T) {
	res := judged(t, judgeDrill, 3*time.Second, true, 300*time.Millisecond)
	if res.Pass {
		t.Fatal("passed")
	}
	v := verdicts(res)
	for name, want := range map[string]string{
		"billing/ledger:8080 maxFailoverTime": "3.3s",
		"billing/ledger:8080 maxErrorRate":    "7.5% (30 of 400)",
		"pii-eu neverReaches [us-east]":       "170 requests",
		"residency policy in force":           "170 requests",
	} {
		if got := v[name]; got.Pass || got.Measured != want {
			t.Errorf("%s: %+v, want failed with %s", name, got, want)
		}
	}
	if got := v["billing/ledger:8080 maxAddedP99"]; got.Pass || !strings.HasPrefix(got.Measured, "29") {
		t.Errorf("p99: %+v, want failed, about 295ms added", got)
	}
	if !strings.Contains(v["pii-eu neverReaches [us-east]"].Detail, "served by us-1 in us-east") {
		t.Errorf("detail %q", v["pii-eu neverReaches [us-east]"].Detail)
	}
}

func TestJudgeRefusedWhile(t *testing.T) {
	doc := strings.Replace(judgeDrill, "neverReaches: [us-east]}", "refusedWhile: kill}", 1)
	res := judged(t, doc, 40*time.Second, false, 0)
	v := verdicts(res)["pii-eu refusedWhile kill"]
	if !v.Pass || v.Measured != "0 served, 0 refused, 200 failed" {
		t.Errorf("refused while: %+v", v)
	}
	res = judged(t, doc, time.Second, false, 0)
	if v := verdicts(res)["pii-eu refusedWhile kill"]; v.Pass || !strings.Contains(v.Detail, "first served at 11s by eu-2") {
		t.Errorf("served while it should be refused: %+v", v)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{.5: 500 * time.Millisecond, .99: 990 * time.Millisecond} {
		got := h.quantile(q)
		if got < want || float64(got) > float64(want)*1.03 {
			t.Errorf("q%.2f = %s, want %s within 3%%", q, got, want)
		}
	}
	var empty histogram
	if empty.quantile(.99) != 0 {
		t.Error("empty histogram: non-zero quantile")
	}
}

func TestFailuresMostFrequentFirst(t *testing.T) {
	rec := newRecorder(2)
	for i, reason := range []string{"b", "a", "b", "c", "b", "a", "d", "e", "f", "g"} {
		rec.add(Sample{Traffic: 0, Start: time.Duration(i) * time.Millisecond, Outcome: Failed, Err: reason})
	}
	rec.add(Sample{Traffic: 0, Outcome: OK, Cluster: "x", Region: "r"})
	rec.add(Sample{Traffic: 1, Outcome: Refused, Err: "refused: 403 residency"})
	got := rec.failures(0)
	want := []Failure{{"b", 3}, {"a", 2}, {"c", 1}, {"d", 1}, {"e", 1}}
	if !slices.Equal(got, want) {
		t.Errorf("failures %v, want %v", got, want)
	}
	if got := rec.failures(1); len(got) != 1 || got[0].Reason != "refused: 403 residency" {
		t.Errorf("traffic 1 failures %v", got)
	}
}
