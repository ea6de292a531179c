//go:build bench

package lab_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/lab"
)

// sinkServer reads everything a client sends, then answers with one byte.
// A client that sends nothing gets the byte at once (a ping).
func sinkServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [8]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				n, _ := strconv.ParseInt(string(hdr[:]), 16, 64)
				io.CopyN(io.Discard, c, n)
				c.Write([]byte{1})
			}()
		}
	}()
	return ln.Addr().String()
}

// transfer sends n bytes to addr and waits for the answer.
func transfer(addr string, n int64) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(c, "%08x", n); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	for sent := int64(0); sent < n; {
		k := min(int64(len(buf)), n-sent)
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		sent += k
	}
	var ack [1]byte
	_, err = io.ReadFull(c, ack[:])
	return err
}

func benchLab(t *testing.T, sink string) *lab.Lab {
	t.Helper()
	_, ps, _ := net.SplitHostPort(sink)
	port, _ := strconv.Atoi(ps)
	svc := discovery.Service{Namespace: "bench", Name: "sink", Endpoints: []string{"127.0.0.1"},
		Ports: []discovery.Port{{Port: 9000, TargetPort: port}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{DirectLinks: true, Clusters: []lab.ClusterSpec{
		{Name: "a", Region: "r1", Imports: []gateway.Import{{Service: "bench/sink", Port: 9000, Listen: "127.0.0.1:0"}}},
		{Name: "b", Region: "r2", Services: []discovery.Service{svc}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func bench(name string, v float64, unit string) { fmt.Printf("BENCH %s %.3f %s\n", name, v, unit) }

// TestBenchDataplaneFoundation measures bulk throughput and new-connection
// latency through two gateways (client -> A -> mTLS -> B -> server) against
// the same traffic sent directly, in one run.
func TestBenchDataplaneFoundation(t *testing.T) {
	sink := sinkServer(t)
	l := benchLab(t, sink)
	via := l.Gateway("a").ImportAddrs()["bench/sink:9000"]

	const size = 512 << 20
	throughput := func(addr string) float64 {
		best := 0.0
		for range 3 {
			start := time.Now()
			if err := transfer(addr, size); err != nil {
				t.Fatal(err)
			}
			best = max(best, float64(size)/(1<<20)/time.Since(start).Seconds())
		}
		return best
	}
	direct, gw := throughput(sink), throughput(via)
	bench("direct_throughput_mibs", direct, "MiB/s")
	bench("foundation_throughput_mibs", gw, "MiB/s")
	bench("foundation_vs_direct_throughput_x", gw/direct, "x")

	const conns = 500
	latency := func(addr string) (p50, p99 float64) {
		var ds []float64
		for range conns {
			start := time.Now()
			if err := transfer(addr, 0); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, float64(time.Since(start).Microseconds())/1000)
		}
		sort.Float64s(ds)
		return ds[len(ds)/2], ds[len(ds)*99/100]
	}
	d50, d99 := latency(sink)
	g50, g99 := latency(via)
	bench("direct_newconn_p50_ms", d50, "ms")
	bench("direct_newconn_p99_ms", d99, "ms")
	bench("foundation_newconn_p50_ms", g50, "ms")
	bench("foundation_newconn_p99_ms", g99, "ms")
	bench("foundation_vs_direct_newconn_p99_x", g99/d99, "x")
}
