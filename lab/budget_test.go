//go:build linux

package lab_test

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/lab"
)

// idleConns opens n TCP connections to addr that never send a byte,
// spread round robin over sources loopback addresses (127.0.0.2 on; all
// of 127.0.0.0/8 is loopback on Linux), dialling from workers goroutines.
// A connection refused while it was being set up is a nil entry.
func idleConns(t testing.TB, addr string, n, sources, workers int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				src := net.IPv4(127, 0, byte(2+i%sources/250), byte(2+i%sources%250))
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
				if c, err := d.Dial("tcp", addr); err == nil {
					conns[i] = c
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return conns
}

// closedByPeer reports whether the other end closed or reset c, without
// waiting: a non-blocking peek at the socket.
func closedByPeer(c net.Conn) bool {
	if c == nil {
		return true
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err != nil && !errors.Is(err, syscall.EAGAIN)
		return true
	})
	return closed
}

// stillOpen counts the connections the other end has not closed.
func stillOpen(conns []net.Conn) int {
	n := 0
	for _, c := range conns {
		if !closedByPeer(c) {
			n++
		}
	}
	return n
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// TestListenerBudgets floods the data, Raft and control ports of a
// gateway with idle TCP connections from several addresses: each port
// holds at most its budget, the rest are closed at once (by listener
// budget or per-source cap), the admitted ones are closed at the
// handshake deadline, every one is counted, and a new connection through
// an import port is carried meanwhile.
func TestListenerBudgets(t *testing.T) {
	const (
		budget    = 20
		perSource = 4
		flood     = 100
		sources   = 10
		deadline  = 500 * time.Millisecond
	)
	l := startLineLab(t, lab.Spec{State: true, Tune: func(cluster string, cfg *gateway.Config) {
		if cluster != "a" {
			return
		}
		cfg.Limits.HandshakeTimeout = deadline
		cfg.Limits.HandshakesPerSource = perSource
		cfg.Limits.Listeners.Data, cfg.Limits.Listeners.Raft, cfg.Limits.Listeners.Control = budget, budget, budget
	}},
		lab.ClusterSpec{Name: "a", Region: "r1", Voter: true, Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a := l.Gateway("a")
	ports := map[string]string{"data": a.DataAddr(), "raft": a.State().RaftAddr(), "control": a.ControlAddr()}
	client := dialLine(t, a.ImportAddrs()["demo/lines:7000"])
	if _, err := client.ask(3); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	held := map[string][]net.Conn{}
	for _, name := range []string{"data", "raft", "control"} {
		held[name] = idleConns(t, ports[name], flood, sources, 8)
		defer closeAll(held[name])
	}
	// Meanwhile a new client is carried.
	fresh := dialLine(t, a.ImportAddrs()["demo/lines:7000"])
	if cl, err := fresh.ask(5); err != nil || cl != "b" {
		t.Fatalf("new connection during the flood: %q, %v", cl, err)
	}
	for name, conns := range held {
		if n := stillOpen(conns); n > budget {
			t.Errorf("%s port holds %d idle connections, budget %d", name, n, budget)
		}
	}
	waitFor(t, func() bool {
		for _, conns := range held {
			if stillOpen(conns) > 0 {
				return false
			}
		}
		return true
	})
	if d := time.Since(start); d < deadline {
		t.Fatalf("every idle connection closed after %s, before the handshake deadline %s", d, deadline)
	}
	var listeners, sourced float64
	for name := range ports {
		listener := metricValue(t, a, "strait_gateway_connections_refused_total", map[string]string{"listener": name, "reason": "listener"})
		source := metricValue(t, a, "strait_gateway_connections_refused_total", map[string]string{"listener": name, "reason": "source"})
		timedOut := metricValue(t, a, "strait_gateway_handshake_timeouts_total", map[string]string{"listener": name})
		t.Logf("%s: refused %v over the budget, %v over the per-source cap, %v closed at the deadline", name, listener, source, timedOut)
		if listener+source+timedOut != flood || timedOut > budget {
			t.Errorf("%s: %v+%v refused, %v timed out; want %d in all, at most %d timed out", name, listener, source, timedOut, flood, budget)
		}
		listeners += listener
		sourced += source
	}
	// The three ports share the per-source cap: 10 sources with 4
	// handshakes each fill two budgets of 20, the third port refuses by
	// source.
	if listeners == 0 || sourced == 0 {
		t.Errorf("refused %v by listener budgets, %v by the per-source cap; want both", listeners, sourced)
	}
	if _, err := client.ask(3); err != nil {
		t.Fatalf("the first client after the flood: %v", err)
	}
}
