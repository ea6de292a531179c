package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/identity"
)

const monitoringDir = "../deploy/monitoring"

// exportedMetricNames starts a gateway as it is deployed (certificates from
// files, so the certificate manager's metrics are there; a routing-state
// voter) and returns every metric name its registry serves, together with
// those its own collectors describe that have no series yet.
func exportedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	ca, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteIDFiles(dir, identity.ID{Role: identity.RoleVoter, Region: "eu-west", Cluster: "a"}, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg := gateway.DefaultConfig()
	cfg.Cluster, cfg.Region = "a", "eu-west"
	cfg.TLS = gateway.TLSConfig{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem")}
	cfg.Listen = gateway.ListenConfig{Data: freeAddr(t), Admin: freeAddr(t), Connect: freeAddr(t), Control: freeAddr(t)}
	cfg.Gossip.Bind, cfg.Gossip.Profile, cfg.Gossip.NodeName = "127.0.0.1:0", "local", "a"
	cfg.Gossip.Key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	cfg.State.DataDir, cfg.State.Bind, cfg.State.Voter, cfg.State.BootstrapExpect = t.TempDir(), freeAddr(t), true, 1
	g, err := gateway.Start(cfg, gateway.Options{Version: "v1.2.3", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	mfs, err := g.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range gateway.DescribedMetricNames(g) {
		names[n] = true
	}
	return names
}

// selectorNames returns the metric names expr selects. A histogram's or
// summary's series (_bucket, _sum, _count) name the metric they belong to.
func selectorNames(t *testing.T, what, expr string, known map[string]bool) []string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", what, expr, err)
		return nil
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && known[base] && !known[name] {
				name = base
			}
		}
		out = append(out, name)
		return nil
	})
	if len(out) == 0 {
		t.Errorf("%s: %q selects no metric by name", what, expr)
	}
	return out
}

var (
	// Grafana's variables stand for a range or a regexp when the query runs.
	grafanaRange = regexp.MustCompile(`\$__(rate_)?interval|\$__range`)
	grafanaVar   = regexp.MustCompile(`\$\{?\w+\}?`)
	labelValues  = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)$`)
)

// The alerting rules parse as Prometheus parses them, and every metric
// they select is one a gateway serves.
func TestAlertingRulesNameExportedMetrics(t *testing.T) {
	known := exportedMetricNames(t)
	for _, want := range []string{"strait_build_info", "strait_peer_up", "strait_gateway_tunnel_rtt_seconds", "strait_identity_certificate_expiry_days", "strait_state_stale", "strait_residency_refused_flows_total"} {
		if !known[want] {
			t.Fatalf("the gateway does not serve %s; serves %v", want, sortedKeys(known))
		}
	}

	groups, errs := rulefmt.ParseFile(filepath.Join(monitoringDir, "alerts.yaml"), false)
	for _, err := range errs {
		t.Errorf("alerts.yaml: %v", err)
	}
	if groups == nil {
		t.Fatal("alerts.yaml: no rule groups")
	}
	used := map[string]bool{}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			for _, n := range selectorNames(t, "alert "+r.Alert, r.Expr, known) {
				used[n] = true
				if !known[n] {
					t.Errorf("alert %s uses %s, which the gateway does not serve", r.Alert, n)
				}
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary", r.Alert)
			}
		}
	}
	// The conditions the rules are there for: failover, residency
	// refusals, certificates near expiry, stale routing state or no
	// leader, a peer down.
	for _, want := range []string{"strait_gateway_failovers_total", "strait_residency_refused_flows_total", "strait_identity_certificate_expiry_days",
		"strait_state_stale", "strait_state_has_leader", "strait_peer_up"} {
		if !used[want] {
			t.Errorf("no alert watches %s", want)
		}
	}
	if alerts < 6 {
		t.Errorf("%d alerts", alerts)
	}
}

type grafanaPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

// Every query of the dashboard, its panels' and its variables', parses as
// PromQL and selects only metrics a gateway serves.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	known := exportedMetricNames(t)
	data, err := os.ReadFile(filepath.Join(monitoringDir, "strait-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("strait-dashboard.json: %v", err)
	}
	if dash.UID == "" {
		t.Error("the dashboard has no uid")
	}
	used := map[string]bool{}
	check := func(what, expr string) {
		expr = grafanaVar.ReplaceAllString(grafanaRange.ReplaceAllString(expr, "5m"), "x")
		for _, n := range selectorNames(t, what, expr, known) {
			used[n] = true
			if !known[n] {
				t.Errorf("%s uses %s, which the gateway does not serve", what, n)
			}
		}
	}
	queries := 0
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				check("panel "+p.Title, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		check("variable "+v.Name, m[1])
	}
	// What the dashboard is there to show.
	for _, want := range []string{"strait_gateway_connections_total", "strait_gateway_failovers_total", "strait_residency_refused_flows_total",
		"strait_gateway_tunnels", "strait_gateway_tunnel_rtt_seconds", "strait_peer_up", "strait_identity_certificate_expiry_days",
		"strait_state_stale", "strait_state_leader"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	if queries < 20 {
		t.Errorf("%d queries", queries)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return slices.Clip(out)
}
