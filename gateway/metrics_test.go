package gateway

import (
	"maps"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/straitmesh/strait/federation/catalog"
)

var fqName = regexp.MustCompile(`fqName: "([a-z_]+)"`)

// Every data-plane metric is in docs/metrics.md, so operators can find
// what it counts.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(prometheus.NewRegistry(), "test", "a")
	names := 0
	for _, c := range m.all() {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			match := fqName.FindStringSubmatch(d.String())
			if match == nil {
				t.Fatalf("no name in %s", d)
			}
			names++
			if !strings.Contains(string(doc), "`"+match[1]+"`") {
				t.Errorf("%s is not in docs/metrics.md", match[1])
			}
		}
	}
	if names < 18 {
		t.Fatalf("described %d metrics", names)
	}
}

func TestBuildInfoNamesTheBinary(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg, "v1.4.0", "a")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	for _, mf := range mfs {
		if mf.GetName() != "strait_build_info" {
			continue
		}
		if n := len(mf.GetMetric()); n != 1 {
			t.Fatalf("%d strait_build_info series", n)
		}
		m := mf.GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("strait_build_info = %v, want 1", v)
		}
		got = map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
	}
	if got == nil {
		t.Fatal("no strait_build_info")
	}
	if got["version"] != "v1.4.0" || got["goversion"] != runtime.Version() || got["revision"] == "" {
		t.Errorf("strait_build_info labels %v", got)
	}
}

// peerUp collects strait_peer_up for snap as cluster a sees it.
func peerUp(t *testing.T, p *peersCollector, snap *catalog.Snapshot) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	p.collectUp(ch, snap)
	close(ch)
	out := map[string]float64{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		l := map[string]string{}
		for _, lp := range pb.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		out[l["destination_cluster"]+"/"+l["region"]] = pb.GetGauge().GetValue()
	}
	return out
}

// strait_peer_up has one series per other cluster the catalog lists: 1
// while any of its gateways is alive, 0 while none is, none once the
// catalog forgets the cluster.
func TestPeerUpFollowsTheCatalog(t *testing.T) {
	view := func(node, cluster, region, state string) *catalog.ClusterView {
		return &catalog.ClusterView{Entry: catalog.Entry{Node: node, Cluster: cluster, Region: region}, State: state, Reachable: state == "alive"}
	}
	p := newPeersCollector("a")
	snap := &catalog.Snapshot{Local: "a", Clusters: []*catalog.ClusterView{
		view("a", "a", "eu-west", "alive"),
		view("b", "b", "eu-central", "alive"),
		view("c-1", "c", "us-east", "dead"),
		view("c-2", "c", "us-east", "alive"),
		view("d", "d", "ap-south", "dead"),
		view("e", "e", "eu-north", "left"),
	}}
	want := map[string]float64{"b/eu-central": 1, "c/us-east": 1, "d/ap-south": 0, "e/eu-north": 0}
	if got := peerUp(t, p, snap); !maps.Equal(got, want) {
		t.Errorf("strait_peer_up %v, want %v", got, want)
	}
	snap.Clusters = slices.DeleteFunc(slices.Clone(snap.Clusters), func(v *catalog.ClusterView) bool { return v.Cluster == "d" || v.Node == "c-2" })
	want = map[string]float64{"b/eu-central": 1, "c/us-east": 0, "e/eu-north": 0}
	if got := peerUp(t, p, snap); !maps.Equal(got, want) {
		t.Errorf("after d and c-2 were forgotten: strait_peer_up %v, want %v", got, want)
	}
}
