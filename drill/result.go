package drill

import (
	"time"
)

// ResultVersion is the version of the Result document.
const ResultVersion = "strait.io/v1"

// Result is what a run of a drill measured and how it was judged: the
// document `strait drill run --json` writes and `strait drill report`
// reads. Offsets are from the drill's start.
type Result struct {
	APIVersion  string        `json:"apiVersion"` // ResultVersion
	Drill       string        `json:"drill"`
	Description string        `json:"description,omitempty"`
	File        string        `json:"file,omitempty"`
	Target      string        `json:"target"` // what the drill ran on: "lab", "federation fed.yaml"
	Started     time.Time     `json:"started"`
	Planned     time.Duration `json:"planned"` // the drill's duration
	Ran         time.Duration `json:"ran"`     // how long it ran (shorter when aborted)
	// Aborted is set when a stop condition ended the drill early.
	Aborted *Abort `json:"aborted,omitempty"`
	// Clusters are the federation's clusters, for grouping by region.
	Clusters []ClusterInfo   `json:"clusters"`
	Steps    []StepRecord    `json:"steps"`
	Traffic  []TrafficResult `json:"traffic"`
	// Failovers are measured per service and fault that took a cluster
	// serving it away.
	Failovers []Failover `json:"failovers,omitempty"`
	// Violations are requests served where their residency class may not
	// go; a correct federation has none.
	Violations []Violation `json:"violations,omitempty"`
	Verdicts   []Verdict   `json:"verdicts"`
	// Pass is true when every verdict passed and the drill was not aborted.
	Pass bool `json:"pass"`
}

// ClusterInfo is one cluster of the federation a drill ran on.
type ClusterInfo struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Cloud  string `json:"cloud,omitempty"`
}

// Abort says which stop condition ended a drill, and when.
type Abort struct {
	At        time.Duration `json:"at"`
	Condition string        `json:"condition"` // errorRateAbove, anyResidencyViolation, gatewayNotReadyFor
	Reason    string        `json:"reason"`
}

// StepRecord is one timeline step as it was carried out.
type StepRecord struct {
	Name string    `json:"name"`
	Kind FaultKind `json:"kind"`
	// Touches says what the step acts on, for people: "cluster aws-eu-west-1
	// (gateways gw-0, gw-1)".
	Touches string        `json:"touches"`
	At      time.Duration `json:"at"` // planned offset
	// Done is when the fault was in place (or the restore done); zero when
	// it never was (Error, or the drill stopped before).
	Done time.Duration `json:"done,omitempty"`
	// Undone is when the fault was undone: by its restore step, by the
	// drill's end, or by an abort.
	Undone time.Duration `json:"undone,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// TrafficResult is what one traffic entry measured.
type TrafficResult struct {
	Name     string   `json:"name"`
	Service  string   `json:"service"` // namespace/name:port
	From     []string `json:"from"`
	Protocol string   `json:"protocol"`
	Rate     int      `json:"rate"`
	// Classes are the residency classes the policy gives this traffic,
	// with the regions each may reach.
	Classes []ClassInfo `json:"classes,omitempty"`
	Totals  Counts      `json:"totals"`
	// Failures are the most frequent reasons of its errors and refusals,
	// most frequent first (at most MaxFailures).
	Failures []Failure `json:"failures,omitempty"`
	// Seconds holds one bucket per second of the drill, by offset.
	Seconds []Second `json:"seconds"`
}

// MaxFailures is how many distinct reasons a TrafficResult keeps.
const MaxFailures = 5

// Failure is one reason requests failed or were refused, and how often.
type Failure struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// ClassInfo is a residency class and the regions it allows.
type ClassInfo struct {
	Name    string   `json:"name"`
	Regions []string `json:"regions"`
}

// Counts are request outcomes. A refusal is an answer of the residency
// policy (403 with X-Strait-Reason), counted apart from errors: whether it
// was right is a residency verdict.
type Counts struct {
	Requests int `json:"requests"`
	OK       int `json:"ok"`
	Errors   int `json:"errors"`
	Refused  int `json:"refused"`
}

// Second is one second of one traffic entry.
type Second struct {
	T int `json:"t"` // seconds from the drill's start
	Counts
	// Latency percentiles of the second's answered requests, in
	// milliseconds; 0 when none was answered.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	// ByRegion and ByCluster count the successful requests by where they
	// were served.
	ByRegion  map[string]int `json:"byRegion,omitempty"`
	ByCluster map[string]int `json:"byCluster,omitempty"`
}

// Failover is the time from a fault to the first success of a service's
// traffic that was served elsewhere than by the clusters the fault took.
type Failover struct {
	Service string        `json:"service"`
	Traffic string        `json:"traffic"`
	Step    string        `json:"step"`
	At      time.Duration `json:"at"` // when the fault was in place
	// Time to the first success elsewhere; -1 when none came before the
	// fault was undone or the drill ended.
	Time time.Duration `json:"time"`
	// Cluster served that first success.
	Cluster string `json:"cluster,omitempty"`
}

// Violation is one request served where its class may not go.
type Violation struct {
	At      time.Duration `json:"at"`
	Traffic string        `json:"traffic"`
	Class   string        `json:"class"`
	Region  string        `json:"region"`
	Cluster string        `json:"cluster"`
	// Source says who reported it: "responder" (the serving service named
	// its region), "gateway" (the answer's X-Strait-Region) or "audit".
	Source string `json:"source"`
}

// Verdict is one expectation judged: pass or fail, with the figure.
type Verdict struct {
	// Expectation names it: "billing/ledger:8080 maxFailoverTime",
	// "pii-eu neverReaches us-east".
	Expectation string `json:"expectation"`
	Limit       string `json:"limit"`    // "5s", "1%", "0 requests"
	Measured    string `json:"measured"` // "1.2s", "0.4%"
	Pass        bool   `json:"pass"`
	Detail      string `json:"detail,omitempty"`
}
