package lab_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/lab"
)

// TestExportImportRecords: the routing state's export and import records
// take effect on every gateway. An export record keeps every cluster it
// does not name out of the plans (and out of that cluster's catalog
// entry), and that cluster's gateway refuses streams for the service; an
// import record makes the gateways that serve the service refuse every
// other cluster by its certificate, and the gateways of other clusters
// refuse their workloads at once (403, kind access). Deleting the records
// opens the service again.
func TestExportImportRecords(t *testing.T) {
	b := startDemo(t, "demo/api", "b", "us-east", nil)
	c := startDemo(t, "demo/api", "c", "ap-south", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{State: true,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-west", Voter: true},
			{Name: "b", Region: "us-east", Voter: true, Services: []discovery.Service{b}},
			{Name: "c", Region: "ap-south", Voter: true, Services: []discovery.Service{c}},
			{Name: "d", Region: "eu-central"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctl := opsControl(t, l, "d")
	write := func(op, kind, value string) {
		t.Helper()
		if _, err := ctl.Write(ctx, &state.WriteRequest{Op: op, Kind: kind, Key: "demo/api", Value: value}); err != nil {
			t.Fatalf("%s %s: %v", op, kind, err)
		}
	}
	// where sends n connections from src and counts where they went, by
	// cluster, or by status when refused.
	where := func(src string, n int) map[string]int {
		got := map[string]int{}
		for range n {
			resp, r := viaConnect(t, l.Gateway(src).ConnectAddr(), "api.demo.svc.clusterset.local:8080")
			if resp.StatusCode != http.StatusOK {
				got[resp.Status+" "+resp.Header.Get("X-Strait-Reason")]++
				continue
			}
			got[r.Cluster]++
		}
		return got
	}
	// await polls where until ok holds for both sources, within 5s.
	await := func(what string, ok func(src string, got map[string]int) bool) {
		t.Helper()
		start := time.Now()
		for {
			ga, gd := where("a", 10), where("d", 10)
			if ok("a", ga) && ok("d", gd) {
				t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("5s on, not %s: from a %v, from d %v", what, ga, gd)
			}
		}
	}
	await("b and c both serve", func(_ string, got map[string]int) bool { return got["b"] > 0 && got["c"] > 0 })

	// stream opens a stream for demo/api on cluster's gateway with a
	// certificate of peer in region, as any gateway could, and returns the
	// answer line.
	stream := func(cluster, region, peer string) string {
		t.Helper()
		cert, err := l.CA.Issue(region, peer, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Gateway(cluster).DataAddr(), &tls.Config{
			Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{wire.ALPNFlow},
			ServerName: wire.Target{Namespace: "demo", Name: "api", Port: 8080}.SNI(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "{}\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return strings.TrimSpace(line)
	}

	// Only c may export demo/api.
	write(state.OpPut, state.KindExport, `{"clusters":["c"]}`)
	await("only c serves", func(_ string, got map[string]int) bool { return got["c"] == 10 })
	if got := stream("b", "eu-west", "a"); !strings.HasPrefix(got, "ERR access: the routing state's export record for demo/api (port 8080) does not name cluster b") {
		t.Errorf("a stream to b under the export record: %q", got)
	}
	if got := stream("c", "eu-west", "a"); got != "OK" {
		t.Errorf("a stream to c under the export record: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for clusterServes(l, "a", "b", "demo", "api") {
		if time.Now().After(deadline) {
			t.Fatal("b still announces demo/api 5s after the export record left it out")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Only d may import it: a is refused at its own gateway, and c refuses
	// a stream with a's certificate.
	write(state.OpPut, state.KindImport, `{"clusters":["d"]}`)
	await("only d imports", func(src string, got map[string]int) bool {
		if src == "d" {
			return got["c"] == 10
		}
		for k, n := range got {
			if n == 10 && strings.HasPrefix(k, "403 ") && strings.Contains(k, "import record") {
				return true
			}
		}
		return false
	})
	if got := stream("c", "eu-west", "a"); !strings.HasPrefix(got, "ERR access: the routing state's import record for demo/api does not name cluster a") {
		t.Errorf("a stream from a under the import record: %q", got)
	}
	if got := stream("c", "eu-central", "d"); got != "OK" {
		t.Errorf("a stream from d under the import record: %q", got)
	}
	if n := metricValue(t, l.Gateway("a"), "strait_gateway_access_refused_total", map[string]string{"direction": "outbound"}); n == 0 {
		t.Error("a counted no outbound access refusal")
	}
	if n := metricValue(t, l.Gateway("c"), "strait_gateway_access_refused_total", map[string]string{"direction": "inbound"}); n == 0 {
		t.Error("c counted no inbound access refusal")
	}

	write(state.OpDelete, state.KindImport, "")
	write(state.OpDelete, state.KindExport, "")
	await("b and c both serve again", func(_ string, got map[string]int) bool { return got["b"] > 0 && got["c"] > 0 })
}

// clusterServes reports whether gateway from's catalog lists cluster as
// exporting ns/name.
func clusterServes(l *lab.Lab, from, cluster, ns, name string) bool {
	for _, v := range l.Gateway(from).Catalog().Snapshot().Clusters {
		if v.Cluster != cluster {
			continue
		}
		if _, ok := v.Service(ns, name); ok {
			return true
		}
	}
	return false
}
