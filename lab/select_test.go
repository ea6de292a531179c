package lab_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/lab"
)

// TestOutlierEjectsDeadLocalEndpoint: one of two endpoints of a service
// dies between health checks. Every connection through the cluster's
// gateway still succeeds; after three failed connects the gateway ejects
// the dead endpoint, says so on /v1/status and in its metrics, and stops
// dialling it.
func TestOutlierEjectsDeadLocalEndpoint(t *testing.T) {
	first, err := lab.StartDemo("127.0.0.1:0", "demo/ledger", "b", "eu-west")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, ps, _ := net.SplitHostPort(first.Addr())
	// The second endpoint only needs to pass the health check at start.
	second, err := net.Listen("tcp", "127.0.0.2:"+ps)
	if err != nil {
		t.Fatalf("bind a second loopback address (127.0.0.0/8 is loopback on Linux; strait dev needs it too): %v", err)
	}
	checked := make(chan struct{}, 1)
	go func() {
		for {
			c, err := second.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case checked <- struct{}{}:
			default:
			}
		}
	}()
	port, _ := strconv.Atoi(ps)
	ledger := discovery.Service{Namespace: "demo", Name: "ledger", Endpoints: []string{"127.0.0.1", "127.0.0.2"},
		Ports: []discovery.Port{{Name: "http", Port: 8080, TargetPort: port}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-central", Imports: []gateway.Import{{Service: "demo/ledger", Port: 8080, Listen: "127.0.0.1:0"}}},
			{Name: "b", Region: "eu-west", Services: []discovery.Service{ledger}},
		},
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		// The health check ran once at start and will not run again: only
		// the outlier detection can notice the endpoint die.
		Health:  gateway.HealthConfig{Interval: time.Hour, Timeout: 500 * time.Millisecond},
		Outlier: route.OutlierConfig{ConsecutiveFailures: 3, BaseEjection: time.Minute, MaxEjection: 5 * time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := l.Gateway("a"), l.Gateway("b")
	select {
	case <-checked:
	case <-ctx.Done():
		t.Fatal("b never health-checked its second endpoint")
	}
	dead := second.Addr().String()
	second.Close()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + a.ImportAddrs()["demo/ledger:8080"] + "/"
	ejected := func() []route.EjectedStatus {
		st, err := admin.FetchStatus(ctx, b.AdminAddr())
		if err != nil {
			t.Fatal(err)
		}
		return st.Ejected
	}
	n := 0
	for len(ejected()) == 0 {
		if n++; n > 200 {
			t.Fatalf("%s not ejected after 200 connections", dead)
		}
		if r := getJSON(t, client, url); r.Endpoint != first.Addr() {
			t.Fatalf("reply from %s, want %s", r.Endpoint, first.Addr())
		}
	}
	t.Logf("ejected after %d connections", n)
	want := route.EjectedStatus{Service: "demo/ledger:8080", Cluster: "b", Endpoint: dead, Failures: 3, Ejections: 1}
	check := func(when string) {
		t.Helper()
		ej := ejected()
		if len(ej) != 1 {
			t.Fatalf("%s: ejected %+v, want %s only", when, ej, dead)
		}
		got := ej[0]
		if time.Until(got.Until) < 30*time.Second {
			t.Errorf("%s: ejected until %s, want about a minute from now", when, got.Until)
		}
		got.Until = time.Time{}
		if got != want {
			b, _ := json.Marshal(got)
			t.Fatalf("%s: ejected %s, want %+v", when, b, want)
		}
	}
	check("after ejection")
	labels := map[string]string{"service": "demo/ledger:8080", "destination_cluster": "b"}
	if got := metricValue(t, b, "strait_gateway_ejections_total", labels); got != 1 {
		t.Errorf("strait_gateway_ejections_total %v, want 1", got)
	}
	if got := metricValue(t, b, "strait_gateway_ejected", labels); got != 1 {
		t.Errorf("strait_gateway_ejected %v, want 1", got)
	}

	// While ejected the dead endpoint is not dialled: its failures stay.
	for range 30 {
		if r := getJSON(t, client, url); r.Endpoint != first.Addr() {
			t.Fatalf("reply from %s, want %s", r.Endpoint, first.Addr())
		}
	}
	check("30 connections later")
	// Every stream was released once its connection ended (which the
	// gateways see a moment after the client does).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		inB := metricValue(t, b, "strait_gateway_inflight_streams", map[string]string{"destination_cluster": "b"})
		fromA := metricValue(t, a, "strait_gateway_inflight_streams", map[string]string{"destination_cluster": "b"})
		if inB == 0 && fromA == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams in flight with no connection open: %v to b's endpoints, %v from a to b", inB, fromA)
		}
	}
}

// TestFailoverPriorityFromRoutingState: a failover record written to the
// routing state through any gateway changes where every gateway sends the
// service within moments, and deleting it restores load balancing.
func TestFailoverPriorityFromRoutingState(t *testing.T) {
	b := startDemo(t, "demo/api", "b", "us-east", nil)
	c := startDemo(t, "demo/api", "c", "ap-south", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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

	// where sends n connections from each source and counts where they went.
	where := func(n int) map[string]int {
		got := map[string]int{}
		for _, src := range []string{"a", "d"} {
			for range n {
				resp, r := viaConnect(t, l.Gateway(src).ConnectAddr(), "api.demo.svc.clusterset.local:8080")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("from %s: %s %s", src, resp.Status, resp.Header.Get("X-Strait-Reason"))
				}
				got[r.Cluster]++
			}
		}
		return got
	}
	// Without a record b and c share the rank of the remote regions.
	if got := where(20); got["b"] == 0 || got["c"] == 0 {
		t.Fatalf("without a failover record: %v, want both b and c", got)
	}
	put := func(prio ...string) {
		t.Helper()
		v, _ := json.Marshal(state.Failover{Priority: prio})
		start := time.Now()
		if _, err := ctl.Write(ctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindFailover, Key: "demo/api", Value: string(v)}); err != nil {
			t.Fatal(err)
		}
		awaitOnly(t, where, prio[0], start)
	}
	put("c", "b")
	put("b", "c")

	start := time.Now()
	if _, err := ctl.Write(ctx, &state.WriteRequest{Op: state.OpDelete, Kind: state.KindFailover, Key: "demo/api"}); err != nil {
		t.Fatal(err)
	}
	for {
		got := where(20)
		if got["b"] > 0 && got["c"] > 0 {
			t.Logf("record deleted: balanced again after %s", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("5s after the record was deleted: %v, want both b and c", got)
		}
	}
}

// awaitOnly waits until every connection from every source goes to want,
// within 5s of start.
func awaitOnly(t *testing.T, where func(int) map[string]int, want string, start time.Time) {
	t.Helper()
	for {
		got := where(10)
		if got[want] == 20 {
			t.Logf("priority %s first: every gateway routes to it after %s", want, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("5s after the write: %v, want every connection on %s", got, want)
		}
	}
}
