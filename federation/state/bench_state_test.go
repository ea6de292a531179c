//go:build bench

package state

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/benchreport"
)

// TestBenchStateCommit measures commit latency and write throughput of
// three voters on loopback (mTLS Raft transport, raft-wal on disk): a
// write is proposed on the leader and answered once committed by a quorum
// and applied.
func TestBenchStateCommit(t *testing.T) {
	f := newTestFed(t)
	for range 3 {
		f.add(true, 3)
	}
	f.waitMembers()
	ld := f.leader().store
	var follower *Store
	for _, n := range f.nodes {
		if n.store != ld {
			follower = n.store
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	latencies := func(s *Store, n int) []float64 {
		var ds []float64
		for i := range n {
			start := time.Now()
			if _, err := s.Write(ctx, &WriteRequest{Op: OpPut, Kind: KindCluster, Key: fmt.Sprintf("c%d", i%50), Value: `{"region":"eu-west"}`}); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, benchreport.Ms(time.Since(start)))
		}
		return ds
	}
	latencies(ld, 50) // warm up
	ds := latencies(ld, 1000)
	benchreport.Print("state_commit_p50_ms", benchreport.Percentile(ds, 0.50), "ms")
	benchreport.Print("state_commit_p99_ms", benchreport.Percentile(ds, 0.99), "ms")
	t.Logf("p90 %.2f p95 %.2f p98 %.2f max %.2f", benchreport.Percentile(ds, 0.9), benchreport.Percentile(ds, 0.95), benchreport.Percentile(ds, 0.98), benchreport.Percentile(ds, 1))
	fw := latencies(follower, 300)
	benchreport.Print("state_forwarded_commit_p50_ms", benchreport.Percentile(fw, 0.50), "ms")

	const writers, window = 32, 3 * time.Second
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(window)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000 && time.Now().Before(stop); i++ {
				if _, err := ld.Write(ctx, &WriteRequest{Op: OpPut, Kind: KindCluster, Key: fmt.Sprintf("w%d", w), Value: `{"region":"eu-west"}`}); err != nil {
					t.Error(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	benchreport.Print("state_writes_per_s", float64(done.Load())/time.Since(start).Seconds(), "writes/s")
}

// TestBenchStateFailover kills the leader of three voters (default
// state.heartbeatTimeout) and measures until a write through a surviving
// gateway succeeds again; the median of three kills.
func TestBenchStateFailover(t *testing.T) {
	f := newTestFed(t)
	f.tune = func(c *Config) { c.HeartbeatTimeout = DefaultConfig().HeartbeatTimeout }
	for range 3 {
		f.add(true, 3)
	}
	f.waitMembers()
	var ds []float64
	for range 3 {
		old := f.leader()
		var survivor *Store
		for _, n := range f.nodes {
			if n != old {
				survivor = n.store
			}
		}
		start := time.Now()
		old.stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
			_, err := survivor.Write(ctx, &WriteRequest{Op: OpPut, Kind: KindCluster, Key: "failover", Value: `{"region":"eu-west"}`})
			cancel()
			if err == nil {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("no write succeeded 30s after the leader was killed: %v", err)
			}
		}
		ds = append(ds, benchreport.Ms(time.Since(start)))
		f.restart(old)
		f.waitMembers()
	}
	benchreport.Print("state_leader_failover_ms", benchreport.Percentile(ds, 0.5), "ms")
	benchreport.Print("state_leader_failover_max_ms", benchreport.Percentile(ds, 1), "ms")
}
