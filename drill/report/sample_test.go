package report

import (
	"time"

	"github.com/straitmesh/strait/drill"
)

// sampleResult is a realistic run: 4 clusters in 3 regions, 2 traffic
// entries over 90 seconds, aws-eu-west-1 killed at 20s and restored at
// 60s, the EU ledger traffic moving from eu-west to eu-central and back,
// and one failing verdict (the error rate). Every figure is computed, so
// the golden files do not move.
func sampleResult() *drill.Result {
	const (
		n        = 90
		kill     = 20
		restore  = 60
		ledgerRS = 50
		catRS    = 30
	)
	r := &drill.Result{
		APIVersion:  drill.ResultVersion,
		Drill:       "lose-eu-west",
		Description: "Kill aws-eu-west-1; EU traffic must fail over to eu-central within 5s.",
		File:        "deploy/examples/drills/lose-a-cluster.yaml",
		Target:      "lab",
		Started:     time.Date(2026, 11, 27, 21, 0, 0, 0, time.UTC),
		Planned:     n * time.Second,
		Ran:         n * time.Second,
		Clusters: []drill.ClusterInfo{
			{Name: "aws-eu-west-1", Region: "eu-west", Cloud: "aws"},
			{Name: "gcp-eu-central-1", Region: "eu-central", Cloud: "gcp"},
			{Name: "aws-us-east-1", Region: "us-east", Cloud: "aws"},
			{Name: "dc-us-east-2", Region: "us-east", Cloud: "dc"},
		},
		Steps: []drill.StepRecord{
			{Name: "kill-eu-west", Kind: drill.Kill, Touches: "cluster aws-eu-west-1 (gateways gw-0, gw-1)",
				At: kill * time.Second, Done: kill*time.Second + 180*time.Millisecond, Undone: restore*time.Second + 240*time.Millisecond},
			{Name: "restore-eu-west", Kind: drill.Restore, Touches: "cluster aws-eu-west-1 (gateways gw-0, gw-1)",
				At: restore * time.Second, Done: restore*time.Second + 240*time.Millisecond},
		},
	}

	ledger := drill.TrafficResult{
		Name: "ledger-eu", Service: "billing/ledger:8080", From: []string{"aws-eu-west-1", "gcp-eu-central-1"},
		Protocol: "http", Rate: ledgerRS,
		Classes: []drill.ClassInfo{{Name: "pii-eu", Regions: []string{"eu-west", "eu-central"}}},
	}
	catalog := drill.TrafficResult{
		Name: "catalog-global", Service: "shop/catalog:80", From: []string{"aws-us-east-1"},
		Protocol: "http", Rate: catRS,
	}
	for t := 0; t < n; t++ {
		down := t >= kill && t < restore
		// The ledger: all in eu-west, then eu-central while it is down;
		// the first second of the fault loses 40 requests.
		l := drill.Second{T: t, Counts: drill.Counts{Requests: ledgerRS}, P50: 8 + float64(t%3), P90: 14 + float64(t%5), P99: 27 + float64(t%7)}
		if t%15 == 7 {
			l.Refused = 1
		}
		switch {
		case t == kill:
			l.Errors = 40
			l.P99 = 1400
			l.P90 = 900
		case t == restore:
			l.Errors = 3
		}
		served := l.Requests - l.Errors - l.Refused
		l.OK = served
		if down {
			l.P50 += 11
			l.P90 += 13
			l.P99 += 16
			l.ByRegion = map[string]int{"eu-central": served}
			l.ByCluster = map[string]int{"gcp-eu-central-1": served}
		} else {
			l.ByRegion = map[string]int{"eu-west": served}
			l.ByCluster = map[string]int{"aws-eu-west-1": served}
		}
		add(&ledger, l)

		// The catalog: a third from eu-west, the rest from us-east; us-east
		// takes all of it while eu-west is down.
		c := drill.Second{T: t, Counts: drill.Counts{Requests: catRS, OK: catRS}, P50: 31 + float64(t%4), P90: 45 + float64(t%6), P99: 70 + float64(t%9)}
		if t == kill {
			c.Errors, c.OK = 6, catRS-6
		}
		if down {
			c.ByRegion = map[string]int{"us-east": c.OK}
			c.ByCluster = map[string]int{"aws-us-east-1": c.OK / 2, "dc-us-east-2": c.OK - c.OK/2}
		} else {
			c.ByRegion = map[string]int{"eu-west": c.OK / 3, "us-east": c.OK - c.OK/3}
			c.ByCluster = map[string]int{"aws-eu-west-1": c.OK / 3, "aws-us-east-1": c.OK - c.OK/3}
		}
		add(&catalog, c)
	}
	r.Traffic = []drill.TrafficResult{ledger, catalog}
	r.Failovers = []drill.Failover{
		{Service: "billing/ledger:8080", Traffic: "ledger-eu", Step: "kill-eu-west", At: kill*time.Second + 180*time.Millisecond,
			Time: 1430 * time.Millisecond, Cluster: "gcp-eu-central-1"},
		{Service: "shop/catalog:80", Traffic: "catalog-global", Step: "kill-eu-west", At: kill*time.Second + 180*time.Millisecond,
			Time: 610 * time.Millisecond, Cluster: "dc-us-east-2"},
	}
	r.Verdicts = []drill.Verdict{
		{Expectation: "billing/ledger:8080 maxFailoverTime", Limit: "5s", Measured: "1.43s", Pass: true},
		{Expectation: "billing/ledger:8080 maxErrorRate", Limit: "0.5%", Measured: "0.96%", Pass: false,
			Detail: "43 errors in 4500 requests; 40 in the second the cluster went down"},
		{Expectation: "billing/ledger:8080 maxAddedP99", Limit: "50ms", Measured: "16ms", Pass: true},
		{Expectation: "pii-eu neverReaches us-east", Limit: "0 requests", Measured: "0 requests", Pass: true},
	}
	r.Pass = false
	return r
}

func add(t *drill.TrafficResult, s drill.Second) {
	t.Seconds = append(t.Seconds, s)
	t.Totals.Requests += s.Requests
	t.Totals.OK += s.OK
	t.Totals.Errors += s.Errors
	t.Totals.Refused += s.Refused
}

// abortedResult is a drill a stop condition ended, with user text that
// must be escaped or kept on one line wherever it is shown.
func abortedResult() *drill.Result {
	return &drill.Result{
		APIVersion: drill.ResultVersion,
		Drill:      `freeze<"&">`,
		Target:     "federation fed.yaml",
		Planned:    2 * time.Minute,
		Ran:        31500 * time.Millisecond,
		Aborted: &drill.Abort{At: 31500 * time.Millisecond, Condition: "errorRateAbove",
			Reason: "error rate 12.5% > 5% for 10s\n<script>alert(1)</script>"},
		Clusters: []drill.ClusterInfo{{Name: "a", Region: "r1"}},
		Steps: []drill.StepRecord{
			{Name: "freeze-a", Kind: drill.Freeze, Touches: "cluster a", At: 10 * time.Second, Done: 10 * time.Second, Undone: 31500 * time.Millisecond},
			{Name: "never", Kind: drill.Kill, Touches: "cluster b", At: 90 * time.Second},
			{Name: "broken", Kind: drill.Blackhole, Touches: "link a-b", At: 5 * time.Second, Error: "toxiproxy: connection refused"},
		},
		Traffic: []drill.TrafficResult{{Name: "t", Service: "ns/s:80", Rate: 10,
			Totals:  drill.Counts{Requests: 310, OK: 280, Errors: 30},
			Seconds: []drill.Second{{T: 0, Counts: drill.Counts{Requests: 10, OK: 10}, P50: 1, P90: 2, P99: 3, ByRegion: map[string]int{"r1": 10}}}}},
		Failovers:  []drill.Failover{{Service: "ns/s:80", Traffic: "t", Step: "freeze-a", At: 10 * time.Second, Time: -1}},
		Violations: []drill.Violation{{At: 12 * time.Second, Traffic: "t", Class: "pii<b>", Region: "r2", Cluster: "b", Source: "gateway"}},
		Verdicts:   []drill.Verdict{{Expectation: "ns/s:80 maxErrorRate", Limit: "5%", Measured: "9.68%", Pass: false, Detail: `<img src=x onerror="alert(1)">`}},
	}
}
