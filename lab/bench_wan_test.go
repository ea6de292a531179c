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

// TestBenchDataplaneWAN measures a new client connection across a WAN:
// 50 ms round trip between the gateways (the lab's link delays every byte
// by 25 ms each way), from the client's connect to the import port until
// its first response byte, with pooled tunnels and without; and one bulk
// transfer over the same link each way.
//
// The link delays bytes, not TCP's own handshake (the client of the link
// connects to a local proxy), so a fresh connection between gateways costs
// one round trip less here than on a real WAN.
func TestBenchDataplaneWAN(t *testing.T) {
	const oneWay = 25 * time.Millisecond
	const rtt = 2 * oneWay
	echo, sink := echoServer(t), sinkServer(t)
	var tunMiBs, rawMiBs, tunLossMiBs, rawLossMiBs float64
	measure := func(t *testing.T, noTunnels bool) (p50, p90 float64) {
		l := startBenchLab(t, lab.Spec{NoTunnels: noTunnels, Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "r1", Imports: []gateway.Import{benchImport("echo"), benchImport("sink")}},
			{Name: "b", Region: "r2", Services: []discovery.Service{benchService("echo", echo), benchService("sink", sink)}},
		}})
		for _, link := range []*lab.Link{l.Link("a", "b"), l.Link("b", "a")} {
			if err := link.SetLatency(oneWay, 0); err != nil {
				t.Fatal(err)
			}
		}
		addr := importAddr(t, l, "a", "echo")
		// Warm up: the first connections open the pooled tunnels.
		for range 5 {
			if _, err := firstByte(addr, time.Now(), 10*time.Second); err != nil {
				t.Fatalf("warm-up connection: %v", err)
			}
		}
		var ms []float64
		for range 20 {
			took, err := firstByte(addr, time.Now(), 10*time.Second)
			if err != nil {
				t.Fatalf("connection: %v", err)
			}
			ms = append(ms, float64(took.Microseconds())/1000)
		}
		// One bulk stream across the same link: bounded by the tunnel
		// stream's window per round trip. The lab's link buffers without
		// TCP's flow control, which flatters the run without tunnels.
		const size = wanBulk
		start := time.Now()
		if err := transfer(importAddr(t, l, "a", "sink"), size); err != nil {
			t.Fatalf("bulk transfer: %v", err)
		}
		mibs := float64(size) / (1 << 20) / time.Since(start).Seconds()
		if noTunnels {
			rawMiBs = mibs
		} else {
			tunMiBs = mibs
		}
		return median(ms), benchreport.Percentile(ms, 0.9)
	}
	var tun50, tun90, raw50, raw90 float64
	t.Run("tunnels", func(t *testing.T) { tun50, tun90 = measure(t, false) })
	t.Run("notunnels", func(t *testing.T) { raw50, raw90 = measure(t, true) })
	// The same bulk stream with 0.1% of the link's packets lost each way
	// (Link.SetPacketLoss: a lost segment holds the stream up a round trip).
	lossy := func(t *testing.T, noTunnels bool) float64 {
		l := startBenchLab(t, lab.Spec{NoTunnels: noTunnels, Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "r1", Imports: []gateway.Import{benchImport("sink")}},
			{Name: "b", Region: "r2", Services: []discovery.Service{benchService("sink", sink)}},
		}})
		for _, link := range []*lab.Link{l.Link("a", "b"), l.Link("b", "a")} {
			if err := link.SetLatency(oneWay, 0); err != nil {
				t.Fatal(err)
			}
			if err := link.SetPacketLoss(0.001, rtt); err != nil {
				t.Fatal(err)
			}
		}
		const size = wanBulk
		start := time.Now()
		if err := transfer(importAddr(t, l, "a", "sink"), size); err != nil {
			t.Fatalf("bulk transfer: %v", err)
		}
		return float64(size) / (1 << 20) / time.Since(start).Seconds()
	}
	t.Run("tunnels_loss", func(t *testing.T) { tunLossMiBs = lossy(t, false) })
	t.Run("notunnels_loss", func(t *testing.T) { rawLossMiBs = lossy(t, true) })
	if t.Failed() {
		return
	}
	benchreport.Print("dataplane_wan_newconn_ms", tun50, "ms")
	benchreport.Print("dataplane_wan_newconn_p90_ms", tun90, "ms")
	benchreport.Print("dataplane_wan_newconn_notunnels_ms", raw50, "ms")
	benchreport.Print("dataplane_wan_newconn_notunnels_p90_ms", raw90, "ms")
	benchreport.Print("dataplane_wan_newconn_rtt", tun50/float64(rtt.Milliseconds()), "x")
	benchreport.Print("dataplane_wan_throughput_mibs", tunMiBs, "MiB/s")
	benchreport.Print("dataplane_wan_throughput_notunnels_mibs", rawMiBs, "MiB/s")
	benchreport.Print("dataplane_wan_tunnel_vs_conn_x", tunMiBs/rawMiBs, "x")
	benchreport.Print("dataplane_wan_throughput_loss_mibs", tunLossMiBs, "MiB/s")
	benchreport.Print("dataplane_wan_throughput_notunnels_loss_mibs", rawLossMiBs, "MiB/s")
	benchreport.Print("dataplane_wan_tunnel_vs_conn_loss_x", tunLossMiBs/rawLossMiBs, "x")
}

// wanBulk is the size of the bulk transfers across the 50 ms link: large
// enough that the steady state, not the first round trips (while a
// tunnel stream's window grows, and the kernel's TCP windows grow for a
// connection of its own), decides the figure.
const wanBulk = 256 << 20
