//go:build bench

package lab_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/internal/benchreport"
	"github.com/straitmesh/strait/lab"
)

// TestBenchDataplaneFailover measures how long clients of cluster a notice
// when the cluster they use, b (same region), goes away and c (another
// region) has to take over, under a steady stream of new connections:
// once when b's gateway dies (killed, no drain, no gossip leave) and once
// when the path from a to b silently drops everything (a blackhole). The
// _noearly figures are the same with tunnels.earlyData off: client bytes
// wait for the remote answer, so every stream that fails before it can
// go elsewhere.
func TestBenchDataplaneFailover(t *testing.T) {
	for _, fault := range []struct {
		name, prefix string
		noEarly      bool
		do           func(*lab.Lab) error
	}{
		{"kill", "failover", false, func(l *lab.Lab) error { return l.KillGateway("b") }},
		{"blackhole", "failover_blackhole", false, func(l *lab.Lab) error { return l.Link("a", "b").Partition() }},
		{"kill-noearly", "failover_noearly", true, func(l *lab.Lab) error { return l.KillGateway("b") }},
		{"blackhole-noearly", "failover_blackhole_noearly", true, func(l *lab.Lab) error { return l.Link("a", "b").Partition() }},
	} {
		t.Run(fault.name, func(t *testing.T) {
			l := failoverLab(t, fault.noEarly)
			addr := importAddr(t, l, "a", "who")
			for range 20 {
				if who, err := whoAnswers(addr, 5*time.Second); err != nil || who != "b" {
					t.Fatalf("before the fault: answered by %q (%v), want b", who, err)
				}
			}
			faultAt, attempts := failoverStream(t, addr, func() error { return fault.do(l) })
			reportFailover(t, fault.prefix, faultAt, attempts)
		})
	}
}

// failoverLab: a imports bench/who, b (a's region) and c (another region)
// export it, each from a server that answers with its cluster's name.
func failoverLab(t *testing.T, noEarlyData bool) *lab.Lab {
	return startBenchLab(t, lab.Spec{
		NoEarlyData: noEarlyData,
		// A user who wants fast failover configures a short connect
		// timeout (1 s instead of the default 3 s): it bounds how long a
		// silent cluster holds a new connection before the next is tried.
		Timeouts: gateway.Timeouts{Connect: time.Second},
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "r1", Imports: []gateway.Import{benchImport("who")}},
			{Name: "b", Region: "r1", Services: []discovery.Service{benchService("who", nameServer(t, "b"))}},
			{Name: "c", Region: "r2", Services: []discovery.Service{benchService("who", nameServer(t, "c"))}},
		},
	})
}

// whoAnswers makes one connection to a nameServer through addr and returns
// the name it answered with.
func whoAnswers(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(make([]byte, msgSize)); err != nil {
		return "", fmt.Errorf("send request: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 64))
	if err != nil {
		return "", fmt.Errorf("read answer: %w", err)
	}
	if len(b) == 0 {
		return "", errors.New("closed without an answer")
	}
	return string(b), nil
}

type attempt struct {
	start, end time.Time
	who        string
	err        error
}

// failoverStream opens a connection every 2 ms for 1 s, applies fault,
// and goes on for 3 s more; each connection may take 5 s. It returns when
// the fault was applied and every connection.
func failoverStream(t *testing.T, addr string, fault func() error) (time.Time, []attempt) {
	t.Helper()
	const every, warm, after, timeout = 2 * time.Millisecond, time.Second, 3 * time.Second, 5 * time.Second
	n := int((warm + after) / every)
	attempts := make([]attempt, n)
	start := time.Now().Add(10 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			at := start.Add(time.Duration(i) * every)
			time.Sleep(time.Until(at))
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := attempt{start: time.Now()}
				a.who, a.err = whoAnswers(addr, timeout)
				a.end = time.Now()
				attempts[i] = a
			}()
		}
	}()
	time.Sleep(time.Until(start.Add(warm)))
	faultAt := time.Now()
	ferr := fault()
	wg.Wait()
	if ferr != nil {
		t.Fatalf("fault: %v", ferr)
	}
	return faultAt, attempts
}

// reportFailover prints, under prefix: the time from the fault until the
// first connection started at or after it succeeded (_ms), the slowest
// connection started in the 2 s after the fault (_worst_conn_ms) and the
// connections that failed in the whole run (_failed_conns).
// It checks that traffic went to b before the fault and never after.
func reportFailover(t *testing.T, prefix string, faultAt time.Time, attempts []attempt) {
	t.Helper()
	var (
		recovered    time.Time
		worst        time.Duration
		failed, viaB int
		warmNotB     int
		firstErr     error
		warmMs       []float64
	)
	for _, a := range attempts {
		if a.err != nil {
			failed++
			if firstErr == nil {
				firstErr = a.err
			}
		}
		if a.start.Before(faultAt) {
			if a.end.Before(faultAt) {
				warmMs = append(warmMs, float64(a.end.Sub(a.start).Microseconds())/1000)
				if a.who != "b" {
					warmNotB++
				}
			}
			continue
		}
		if a.who == "b" {
			viaB++
			continue
		}
		if a.err == nil && (recovered.IsZero() || a.end.Before(recovered)) {
			recovered = a.end
		}
		if a.start.Sub(faultAt) < 2*time.Second {
			worst = max(worst, a.end.Sub(a.start))
		}
	}
	if warmNotB > 0 {
		t.Errorf("%d connections before the fault were not served by b", warmNotB)
	}
	if viaB > 0 {
		// A killed gateway serves nothing; a link applies a partition to
		// its open connections a moment after the call returns.
		if prefix == "failover" || prefix == "failover_noearly" {
			t.Errorf("%d connections started after the kill were served by b", viaB)
		} else {
			t.Logf("%s: %d connections started just after the fault still reached b (the link applies it asynchronously)", prefix, viaB)
		}
	}
	if recovered.IsZero() {
		t.Fatalf("no connection started after the fault succeeded (%d of %d failed, first: %v)", failed, len(attempts), firstErr)
	}
	if failed > 0 {
		t.Logf("%s: %d of %d connections failed, first: %v", prefix, failed, len(attempts), firstErr)
	}
	if p99 := benchreport.Percentile(warmMs, 0.99); p99 > 100 {
		t.Logf("%s: connections before the fault took up to %.0f ms (p99): the machine is overloaded, the figures measure that too", prefix, p99)
	}
	benchreport.Print(prefix+"_ms", float64(recovered.Sub(faultAt).Microseconds())/1000, "ms")
	benchreport.Print(prefix+"_worst_conn_ms", float64(worst.Microseconds())/1000, "ms")
	benchreport.Print(prefix+"_failed_conns", float64(failed), "conns")
}
