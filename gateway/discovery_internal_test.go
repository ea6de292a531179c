package gateway

import (
	"reflect"
	"testing"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/discovery/kube"
	"github.com/straitmesh/strait/federation/catalog"
)

// TestPeerPorts: the hook discovery gets is, per locally exported
// service, each other cluster that exports it with its ports, once per
// cluster however many gateways it has; this cluster and services not
// exported here are left out.
func TestPeerPorts(t *testing.T) {
	view := func(node, cluster string, svcs ...catalog.Service) *catalog.ClusterView {
		catalog.SortServices(svcs)
		return &catalog.ClusterView{Entry: catalog.Entry{Node: node, Cluster: cluster, Services: svcs}}
	}
	ledger := func(proto string) catalog.Service {
		return catalog.Service{Namespace: "demo", Name: "ledger", Ports: []catalog.Port{{Name: "web", Port: 80, Protocol: proto}}}
	}
	other := catalog.Service{Namespace: "demo", Name: "other", Ports: []catalog.Port{{Port: 1}}}
	snap := &catalog.Snapshot{Local: "a-1", Clusters: []*catalog.ClusterView{
		view("a-1", "a", ledger("http")), view("a-2", "a", ledger("tcp")),
		view("b-1", "b", ledger("grpc"), other), view("b-2", "b", ledger("grpc")),
		view("c-1", "c", other),
	}}
	local := &localTable{byKey: map[string]discovery.Service{"demo/ledger": {Namespace: "demo", Name: "ledger"}}}
	got := peerPorts(snap, "a", local)
	want := map[string][]discovery.ClusterPorts{"demo/ledger": {{Cluster: "b", Ports: []discovery.Port{{Name: "web", Port: 80, Protocol: "grpc"}}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("peerPorts = %+v, want %+v", got, want)
	}
}

func TestKubeImports(t *testing.T) {
	got := kubeImports([]Import{
		{Service: "shop/cart", Port: 80},
		{Service: "demo/ledger", Port: 9000, Protocol: "grpc"},
		{Service: "demo/ledger", Port: 80, Protocol: "http"},
		{Service: "demo/ledger", Port: 80, Listen: "127.0.0.1:18081"},
	})
	want := []kube.Import{
		{Namespace: "demo", Name: "ledger", Ports: []kube.ImportPort{{Port: 9000, Protocol: "grpc"}, {Port: 80, Protocol: "http"}}},
		{Namespace: "shop", Name: "cart", Ports: []kube.ImportPort{{Port: 80}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kubeImports = %+v, want %+v", got, want)
	}
}
