package lab_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/drill"
	"github.com/straitmesh/strait/drill/report"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/fault"
	"github.com/straitmesh/strait/lab"
)

// startDrillDev starts the dev federation with fault mode on and returns
// it as a drill federation.
func startDrillDev(t *testing.T) (*lab.Dev, *drill.Federation) {
	t.Helper()
	_, d, _ := startDev(t, lab.Spec{Tune: func(_ string, cfg *gateway.Config) { cfg.Faults.Enabled = true }})
	file := filepath.Join(t.TempDir(), "federation.json")
	if err := d.WriteFederation(file); err != nil {
		t.Fatal(err)
	}
	fed, err := drill.LoadFederation(file)
	if err != nil {
		t.Fatal(err)
	}
	return d, fed
}

// activeFaults lists the fault IDs a gateway holds (GET /v1/faults).
func activeFaults(t *testing.T, adminAddr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fs, err := admin.Client{Addr: adminAddr}.Faults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.ID)
	}
	return ids
}

func verdictsOf(res *drill.Result) map[string]drill.Verdict {
	out := map[string]drill.Verdict{}
	for _, v := range res.Verdicts {
		out[v.Expectation] = v
	}
	return out
}

// A short drill on the dev federation: eu-west-1 is killed through its
// gateway's fault API, demo/ledger fails over to eu-west-2 and stays in
// the EU; an expectation that cannot hold (the ledger refused while a
// second EU site serves it) is reported failed.
func TestDrillOnTheLab(t *testing.T) {
	d, fed := startDrillDev(t)
	dr, err := drill.Parse("short.yaml", []byte(`apiVersion: strait.io/v1
kind: Drill
metadata: {name: short}
duration: 12s
traffic:
  - name: eu-ledger
    from: [eu-central-1]
    to: demo/ledger:8080
    rate: 20
    headers: {x-data-residency: eu}
  - name: us-profile
    from: [us-east-1]
    to: demo/profile:8080
    rate: 10
timeline:
  - {name: kill-eu-west-1, at: 4s, kind: kill, cluster: eu-west-1}
  - {name: back, at: 9s, kind: restore, step: kill-eu-west-1}
expect:
  services:
    - {service: demo/ledger:8080, maxFailoverTime: 5s, maxErrorRate: 10}
  residency:
    - {class: pii-eu, neverReaches: [us-east]}
    - {class: pii-eu, refusedWhile: kill-eu-west-1}
stop:
  anyResidencyViolation: true
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The dry run lists what each step touches and predicts where the
	// ledger goes: eu-west-1 or eu-west-2 first, eu-west-2 alone while
	// eu-west-1 is down, never us-east; and it does nothing.
	var dry strings.Builder
	if err := drill.DryRun(ctx, &dry, dr, fed); err != nil {
		t.Fatal(err)
	}
	euw1 := d.Info().Clusters[0]
	for _, want := range []string{
		"4s  kill kill-eu-west-1: cluster eu-west-1: gw-0 (" + euw1.Admin + ")",
		"    POST " + euw1.Admin + "/v1/faults  kill  (eu-west-1/gw-0)",
		"eu-ledger from eu-central-1 (class pii-eu): to eu-west-2 (eu-west)\n",
		"    DELETE " + euw1.Admin + "/v1/faults/short.kill-eu-west-1.dry-run  (eu-west-1/gw-0)",
		"us-profile from us-east-1 (no class): to us-east-1 (us-east)",
		"eu-ledger: 20/s http to demo/ledger:8080 from eu-central-1, 0s to 12s",
	} {
		if !strings.Contains(dry.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, dry.String())
		}
	}
	if strings.Contains(dry.String(), "(us-east)\n") && strings.Contains(dry.String(), "eu-ledger from eu-central-1 (class pii-eu): to us-east") {
		t.Errorf("dry run predicts the ledger in us-east:\n%s", dry.String())
	}
	if ids := activeFaults(t, euw1.Admin); len(ids) > 0 {
		t.Fatalf("the dry run injected %v", ids)
	}

	var progress strings.Builder
	res, err := drill.Run(ctx, dr, fed, drill.Options{Progress: &progress, Lease: 3 * time.Second})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	var summary strings.Builder
	if err := report.Summary(&summary, res); err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s\n%s", progress.String(), summary.String())
	if res.Aborted != nil {
		t.Fatalf("aborted: %+v", res.Aborted)
	}
	for _, s := range res.Steps {
		if s.Error != "" || s.Done == 0 {
			t.Errorf("step %+v", s)
		}
	}
	if res.Steps[0].Undone == 0 {
		t.Errorf("kill never undone: %+v", res.Steps[0])
	}
	v := verdictsOf(res)
	for _, name := range []string{"demo/ledger:8080 maxFailoverTime", "demo/ledger:8080 maxErrorRate", "pii-eu neverReaches [us-east]", "residency policy in force"} {
		if !v[name].Pass {
			t.Errorf("%s failed: %+v", name, v[name])
		}
	}
	if got := v["pii-eu refusedWhile kill-eu-west-1"]; got.Pass || !strings.Contains(got.Detail, "eu-west-2") {
		t.Errorf("the deliberately failing expectation: %+v, want failed, served by eu-west-2", got)
	}
	if res.Pass {
		t.Error("the drill passed with a failing expectation")
	}
	// The ledger was served by eu-west-1 before the kill and by eu-west-2
	// only while it held; never outside the EU.
	ledger := res.Traffic[0]
	if len(ledger.Classes) != 1 || ledger.Classes[0].Name != "pii-eu" {
		t.Errorf("ledger traffic classes %+v", ledger.Classes)
	}
	killed, back := int(res.Steps[0].Done/time.Second)+1, int(res.Steps[0].Undone/time.Second)
	for _, s := range ledger.Seconds {
		if s.ByRegion["us-east"] > 0 {
			t.Errorf("second %d: ledger served in us-east", s.T)
		}
		if s.T >= killed && s.T < back && s.ByCluster["eu-west-1"] > 0 {
			t.Errorf("second %d: served by the killed eu-west-1 (%v)", s.T, s.ByCluster)
		}
	}
	if len(res.Failovers) == 0 || res.Failovers[0].Cluster != "eu-west-2" {
		t.Errorf("failovers %+v", res.Failovers)
	}
	if ledger.Totals.Requests < 200 || res.Traffic[1].Totals.OK < 100 {
		t.Errorf("traffic totals %+v, %+v", ledger.Totals, res.Traffic[1].Totals)
	}
	for _, c := range d.Info().Clusters {
		if ids := activeFaults(t, c.Admin); len(ids) > 0 {
			t.Errorf("%s still holds faults %v", c.Name, ids)
		}
	}
}

// A stop condition ends the drill and undoes every fault at once: both
// clusters that serve demo/profile are killed, it has nowhere to go, and
// the error rate stays above 50% for 2s.
func TestDrillStopConditionUndoesEveryFault(t *testing.T) {
	d, fed := startDrillDev(t)
	dr, err := drill.Parse("stop.yaml", []byte(`apiVersion: strait.io/v1
kind: Drill
metadata: {name: stop}
duration: 60s
traffic:
  - {name: profile, from: [eu-west-1], to: demo/profile:8080, rate: 20}
timeline:
  - {name: slow, at: 1s, kind: latency, link: [eu-west-1, eu-west-2], delay: 20ms}
  - {name: kill-central, at: 2s, kind: kill, cluster: eu-central-1}
  - {name: kill-us, at: 2s, kind: kill, cluster: us-east-1}
  - {name: back, at: 50s, kind: restore, step: kill-us}
stop:
  errorRateAbove: {percent: 50, for: 2s}
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress strings.Builder
	start := time.Now()
	res, err := drill.Run(ctx, dr, fed, drill.Options{Progress: &progress, Lease: 30 * time.Second, RequestTimeout: time.Second})
	if err != nil && res == nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	if res.Aborted == nil || res.Aborted.Condition != "errorRateAbove" {
		var summary strings.Builder
		_ = report.Summary(&summary, res)
		t.Fatalf("not aborted by the error rate: %+v\n%s\n%s\nseconds: %+v", res.Aborted, progress.String(), summary.String(), res.Traffic[0].Seconds)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the drill ran %s; the stop should end it within seconds of the loss", took)
	}
	// Why the requests failed is in the result: the gateway's 503.
	if f := res.Traffic[0].Failures; len(f) == 0 || !strings.Contains(f[0].Reason, "503") {
		t.Errorf("failures %+v, want the gateway's 503 first", f)
	}
	if res.Pass {
		t.Error("an aborted drill passed")
	}
	// Faults leased for 30s are gone now: undone by the stop, not by
	// their leases.
	for _, c := range d.Info().Clusters {
		if ids := activeFaults(t, c.Admin); len(ids) > 0 {
			t.Errorf("%s still holds faults %v after the stop", c.Name, ids)
		}
	}
	for _, s := range res.Steps[:3] {
		if s.Undone == 0 || s.Undone < res.Aborted.At {
			t.Errorf("step %s undone at %s, abort at %s", s.Name, s.Undone, res.Aborted.At)
		}
	}
	if res.Steps[3].Done != 0 {
		t.Errorf("the restore after the stop ran: %+v", res.Steps[3])
	}
}

// A gateway without the policy (misconfigured, or compromised) sends
// pii-eu flows out of the EU's reach; the receiving gateway refuses each
// on arrival. The client sees only refusals, but the drill reads the
// receiving gateway's audit trail, counts a violation and stops.
func TestDrillSeesViolationsInTheAuditTrail(t *testing.T) {
	ledger := startDemo(t, "demo/ledger", "eu", "eu-west", map[string]string{"data-class": "pii-eu"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	allowAll := []byte("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: open}\nspec: {default: allow}\n")
	unscoped := []byte(strings.Replace(string(examples.Residency), "catalog: region-only", "", 1))
	l, err := lab.Start(ctx, lab.Spec{Policy: unscoped,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Tune:     func(_ string, cfg *gateway.Config) { cfg.Faults.Enabled = true },
		Clusters: []lab.ClusterSpec{
			{Name: "us", Region: "us-east", Policy: allowAll},
			{Name: "euc", Region: "eu-central"},
			{Name: "eu", Region: "eu-west", Services: []discovery.Service{ledger}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	file := filepath.Join(t.TempDir(), "federation.json")
	if err := l.WriteFederation(file); err != nil {
		t.Fatal(err)
	}
	fed, err := drill.LoadFederation(file)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := drill.Parse("leak.yaml", []byte(`apiVersion: strait.io/v1
kind: Drill
metadata: {name: leak}
duration: 30s
traffic:
  - {name: us-ledger, from: [us], to: demo/ledger:8080, rate: 10}
timeline: []
stop:
  anyResidencyViolation: true
`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := drill.Run(ctx, dr, fed, drill.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Aborted == nil || res.Aborted.Condition != "anyResidencyViolation" || !strings.Contains(res.Aborted.Reason, "gateway eu refused a flow of class pii-eu on arrival") {
		t.Fatalf("aborted %+v, want the violation in eu's audit trail", res.Aborted)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stopped after %s", took)
	}
	if len(res.Violations) == 0 || res.Violations[0].Source != "audit" || res.Violations[0].Cluster != "eu" || res.Violations[0].Class != "pii-eu" {
		t.Errorf("violations %+v", res.Violations)
	}
	// The client never got the ledger: each flow was refused (403); the
	// stop may come before the first refusal's answer is counted.
	if tot := res.Traffic[0].Totals; tot.OK != 0 || tot.Errors != 0 {
		t.Errorf("the client saw %+v: want refusals only", tot)
	}
	if res.Pass {
		t.Error("passed")
	}
}

// gatewayNotReadyFor stops the drill when a gateway it does not hold
// down stays unready: here one a fault of someone else's took down.
func TestDrillStopsOnAnUnreadyGateway(t *testing.T) {
	d, fed := startDrillDev(t)
	var use lab.ClusterInfo
	for _, c := range d.Info().Clusters {
		if c.Name == "us-east-1" {
			use = c
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := (admin.Client{Addr: use.Admin}).InjectFault(ctx, fault.Spec{ID: "not-the-drills", Kind: fault.Kill, Lease: fault.Duration(30 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	dr, err := drill.Parse("ready.yaml", []byte(`apiVersion: strait.io/v1
kind: Drill
metadata: {name: ready}
duration: 60s
traffic:
  - {name: ledger, from: [eu-central-1], to: demo/ledger:8080, rate: 5}
timeline:
  - {name: slow, at: 1s, kind: latency, link: [eu-central-1, eu-west-1], delay: 10ms}
stop:
  gatewayNotReadyFor: 2s
`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := drill.Run(ctx, dr, fed, drill.Options{Lease: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Aborted == nil || res.Aborted.Condition != "gatewayNotReadyFor" || !strings.Contains(res.Aborted.Reason, "us-east-1/gw-0 not ready for 2s") {
		t.Fatalf("aborted %+v, want us-east-1 unready", res.Aborted)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("stopped after %s", took)
	}
	// The drill's own fault is undone; the other one is not the drill's.
	for _, c := range d.Info().Clusters {
		ids := activeFaults(t, c.Admin)
		if c.Name == "us-east-1" && (len(ids) != 1 || ids[0] != "not-the-drills") || c.Name != "us-east-1" && len(ids) > 0 {
			t.Errorf("%s holds faults %v", c.Name, ids)
		}
	}
}
