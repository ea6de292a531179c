//go:build bench

package lab_test

import (
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/internal/benchreport"
	"github.com/straitmesh/strait/lab"
)

// benchPath is one way from a client to the benchmark servers.
type benchPath struct {
	name       string
	sink, echo string // addresses that reach the sinkServer and the echoServer
}

// TestBenchDataplane compares, in one run on loopback, three ways to the
// same servers: direct, through two gateways (client -> import port on A
// -> mTLS -> B -> server) and through two HAProxy instances set up the
// same way. Bulk throughput, request/response latency on persistent
// connections, and a new connection per request.
func TestBenchDataplane(t *testing.T) {
	sink, echo := sinkServer(t), echoServer(t)
	l := startBenchLab(t, lab.Spec{DirectLinks: true, Clusters: []lab.ClusterSpec{
		{Name: "a", Region: "r1", Imports: []gateway.Import{benchImport("sink"), benchImport("echo")}},
		{Name: "b", Region: "r2", Services: []discovery.Service{benchService("sink", sink), benchService("echo", echo)}},
	}})
	ha := haproxyPair(t, l.CA, sink, echo)
	paths := []benchPath{
		{"direct", sink, echo},
		{"dataplane", importAddr(t, l, "a", "sink"), importAddr(t, l, "a", "echo")},
		{"haproxy", ha[0], ha[1]},
	}

	// Throughput: each round sends size bytes over every path in turn;
	// the median round counts.
	const size, rounds = 512 << 20, 5
	mibs := map[string][]float64{}
	for range rounds {
		for _, p := range paths {
			start := time.Now()
			if err := transfer(p.sink, size); err != nil {
				t.Fatalf("%s throughput: %v", p.name, err)
			}
			mibs[p.name] = append(mibs[p.name], float64(size)/(1<<20)/time.Since(start).Seconds())
		}
	}
	thr := map[string]float64{}
	for _, p := range paths {
		thr[p.name] = median(mibs[p.name])
		benchreport.Print(p.name+"_throughput_mibs", thr[p.name], "MiB/s")
	}
	benchreport.Print("dataplane_vs_haproxy_throughput_x", thr["dataplane"]/thr["haproxy"], "x")
	benchreport.Print("dataplane_vs_direct_throughput_x", thr["dataplane"]/thr["direct"], "x")

	// Request/response: 2,000 a second over 4 persistent connections, 5 s.
	rr := map[string]float64{}
	for _, p := range paths {
		lat, err := requestResponse(p.echo, 4, 2000, 5*time.Second)
		if err != nil {
			t.Fatalf("%s request/response: %v", p.name, err)
		}
		rr[p.name] = benchreport.Percentile(lat, 0.99)
		benchreport.Print(p.name+"_rr_p99_us", rr[p.name], "us")
	}
	benchreport.Print("dataplane_vs_haproxy_rr_p99_x", rr["dataplane"]/rr["haproxy"], "x")

	// A new connection per request: 500 a second for 4 s. Between the
	// gateways it is a stream on a pooled tunnel, no TLS handshake; HAProxy
	// resumes TLS sessions between its two instances.
	nc := map[string]float64{}
	for _, p := range paths {
		lat, failed, err := newConnections(p.echo, 500, 4*time.Second)
		if failed > 0 {
			t.Errorf("%s new connections: %d failed, first: %v", p.name, failed, err)
		}
		nc[p.name] = benchreport.Percentile(lat, 0.99)
		t.Logf("%s new connections: p50 %.0f us, p90 %.0f us, p99 %.0f us", p.name,
			benchreport.Percentile(lat, 0.5), benchreport.Percentile(lat, 0.9), nc[p.name])
		benchreport.Print(p.name+"_newconn_p99_us", nc[p.name], "us")
	}
	benchreport.Print("dataplane_vs_haproxy_newconn_p99_x", nc["dataplane"]/nc["haproxy"], "x")
	benchreport.Print("dataplane_vs_direct_newconn_p99_x", nc["dataplane"]/nc["direct"], "x")
}
