package gateway

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestHealthThresholds: real connects on loopback. An endpoint that
// passed is marked down only after health.unhealthyThreshold failures in
// a row and up again after health.healthyThreshold passes; one that
// never passed is down at its first failure; one no longer listed is
// forgotten, and counts as never passed when it comes back.
func TestHealthThresholds(t *testing.T) {
	for _, tc := range []struct{ unhealthy, healthy int }{{2, 1}, {3, 2}, {1, 1}} {
		h := &healthChecker{g: &Gateway{log: slog.New(slog.DiscardHandler)}, timeout: time.Second,
			unhealthy: tc.unhealthy, healthy: tc.healthy, endpoints: map[string]*endpointHealth{}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		up := ln.Addr().String()
		gone, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		never := gone.Addr().String()
		gone.Close() // nothing listens there: connects are refused
		round := func(addrs ...string) map[string]bool {
			t.Helper()
			seen := map[string]bool{}
			for _, a := range addrs {
				seen[a] = true
			}
			return h.record(seen, h.probe(context.Background(), seen))
		}
		if down := round(up, never); down[up] || !down[never] {
			t.Fatalf("%+v: first round down %v: want %s (never passed) and not %s", tc, down, never, up)
		}
		ln.Close()
		for i := 1; i < tc.unhealthy; i++ {
			if down := round(up); down[up] {
				t.Fatalf("%+v: down after %d failures in a row", tc, i)
			}
		}
		if down := round(up); !down[up] {
			t.Fatalf("%+v: not down after %d failures in a row", tc, tc.unhealthy)
		}
		ln, err = net.Listen("tcp", up)
		if err != nil {
			t.Fatalf("listen again on %s: %v", up, err)
		}
		for i := 1; i < tc.healthy; i++ {
			if down := round(up); !down[up] {
				t.Fatalf("%+v: up after %d passes in a row", tc, i)
			}
		}
		if down := round(up); down[up] {
			t.Fatalf("%+v: still down after %d passes in a row", tc, tc.healthy)
		}
		// One failure, then a pass: the count of failures starts again.
		ln.Close()
		if tc.unhealthy > 1 {
			if down := round(up); down[up] {
				t.Fatalf("%+v: down after one failure", tc)
			}
			ln, err = net.Listen("tcp", up)
			if err != nil {
				t.Fatalf("listen again on %s: %v", up, err)
			}
			round(up)
			ln.Close()
			for i := 1; i < tc.unhealthy; i++ {
				if down := round(up); down[up] {
					t.Fatalf("%+v: down after %d failures in a row that followed a pass", tc, i)
				}
			}
		}
		// Forgotten while not listed; back, it has never passed.
		round(never)
		if _, ok := h.endpoints[up]; ok {
			t.Fatalf("%+v: %s is remembered while no service lists it", tc, up)
		}
		if down := round(up); !down[up] {
			t.Fatalf("%+v: an endpoint listed again, refusing, is not down", tc)
		}
	}
}
