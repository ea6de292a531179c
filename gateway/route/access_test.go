package route

import (
	"log/slog"
	"testing"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

func TestAccessTable(t *testing.T) {
	var nilTable *AccessTable
	if !nilTable.MayExport("demo", "api", "b", 80) || !nilTable.MayImport("demo", "api", "a") {
		t.Fatal("no table: closed")
	}
	var a AccessTable
	a.Refresh([]state.Record{
		{Kind: state.KindExport, Key: "demo/api", Value: `{"clusters":["c"],"ports":[8080]}`},
		{Kind: state.KindExport, Key: "demo/any", Value: `{"clusters":[]}`},
		{Kind: state.KindExport, Key: "demo/bad", Value: `{"clusters":`},
	}, []state.Record{
		{Kind: state.KindImport, Key: "demo/api", Value: `{"clusters":["d"]}`},
		{Kind: state.KindImport, Key: "demo/bad", Value: `not json`},
	}, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		name      string
		got, want bool
	}{
		{"named exporter, named port", a.MayExport("demo", "api", "c", 8080), true},
		{"named exporter, other port", a.MayExport("demo", "api", "c", 9090), false},
		{"unnamed exporter", a.MayExport("demo", "api", "b", 8080), false},
		{"named importer", a.MayImport("demo", "api", "d"), true},
		{"unnamed importer", a.MayImport("demo", "api", "a"), false},
		{"empty list: every exporter", a.MayExport("demo", "any", "b", 1), true},
		{"no import record: every importer", a.MayImport("demo", "any", "a"), true},
		{"no record at all", a.MayExport("other", "svc", "b", 1) && a.MayImport("other", "svc", "a"), true},
		{"export record that does not parse: closed", a.MayExport("demo", "bad", "c", 8080), false},
		{"import record that does not parse: closed", a.MayImport("demo", "bad", "d"), false},
		{"restricted", a.Restricted("demo", "api") && !a.Restricted("other", "svc"), true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestPlanKeepsToExportAndImportRecords: a plan leaves out the clusters
// an export record does not name, and every remote cluster when an import
// record does not name the planning one; with nothing left the refusal is
// an access refusal (403) that says which record.
func TestPlanKeepsToExportAndImportRecords(t *testing.T) {
	eng, err := sovereignty.Compile("residency.yaml", examples.Residency)
	if err != nil {
		t.Fatal(err)
	}
	view := func(cluster, region string) *catalog.ClusterView {
		v := &catalog.ClusterView{Entry: catalog.Entry{Node: cluster, Cluster: cluster, Region: region, Gateway: cluster + ":15443"}, Reachable: true, State: "alive"}
		v.Services = []catalog.Service{{Namespace: "demo", Name: "api", Healthy: 1, Total: 1, Ports: []catalog.Port{{Port: 8080}}}}
		return v
	}
	snap := &catalog.Snapshot{Local: "a", Clusters: []*catalog.ClusterView{view("b", "us-east"), view("c", "ap-south")}}
	tgt := wire.Target{Namespace: "demo", Name: "api", Port: 8080}
	self := Self{Cluster: "a", Region: "eu-west"}
	var a AccessTable
	plan := func() *Plan {
		return NewPlan(self, LocalView{}, snap, eng, tgt, FlowIn{Entry: "test", Access: &a}, nil)
	}

	if p := plan(); len(p.Allowed) != 2 || p.Closed != "" {
		t.Fatalf("no records: allowed %v, closed %q", p.Allowed, p.Closed)
	}
	a.Refresh([]state.Record{{Kind: state.KindExport, Key: "demo/api", Value: `{"clusters":["c"]}`}}, nil, slog.New(slog.DiscardHandler))
	if p := plan(); len(p.Allowed) != 1 || p.Allowed[0].Cluster != "c" || p.Closed == "" {
		t.Fatalf("export record naming c: allowed %v, closed %q", p.Allowed, p.Closed)
	}
	a.Refresh([]state.Record{{Kind: state.KindExport, Key: "demo/api", Value: `{"clusters":["x"]}`}}, nil, slog.New(slog.DiscardHandler))
	p := plan()
	nre := p.Refusal(eng)
	if nre == nil || nre.Status() != 403 || nre.Access == "" {
		t.Fatalf("export record naming no exporter: %+v", nre)
	}
	if want := "access: demo/api:8080 refused: the routing state's export record for demo/api (port 8080) does not name clusters b, c"; nre.Error() != want {
		t.Errorf("refusal %q, want %q", nre.Error(), want)
	}
	a.Refresh(nil, []state.Record{{Kind: state.KindImport, Key: "demo/api", Value: `{"clusters":["d"]}`}}, slog.New(slog.DiscardHandler))
	nre = plan().Refusal(eng)
	if nre == nil || nre.Status() != 403 || nre.Access != "the routing state's import record for demo/api does not name cluster a" {
		t.Fatalf("import record not naming a: %+v", nre)
	}
}
