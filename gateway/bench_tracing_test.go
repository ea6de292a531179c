//go:build bench

package gateway

import (
	"testing"

	"github.com/straitmesh/strait/internal/benchreport"
)

// TestBenchTracingOff prints what tracing costs one connection when it is
// off (no tracer provider): every span helper an L4 flow, an HTTP request
// and an inbound stream call, in ns and allocations, and the same with an
// SDK provider that samples everything and exports nowhere. The data
// path's own figures with tracing off are `make bench-dataplane`'s.
func TestBenchTracingOff(t *testing.T) {
	perOp := func(r testing.BenchmarkResult) float64 { return float64(r.T.Nanoseconds()) / float64(r.N) }
	off := testing.Benchmark(BenchmarkTracingOff)
	on := testing.Benchmark(BenchmarkTracingOn)
	benchreport.Print("tracing_off_overhead_ns", perOp(off), "ns")
	benchreport.Print("tracing_off_allocs", float64(off.AllocsPerOp()), "allocs")
	benchreport.Print("tracing_on_overhead_ns", perOp(on), "ns")
	benchreport.Print("tracing_on_allocs", float64(on.AllocsPerOp()), "allocs")
	if off.AllocsPerOp() != 0 {
		t.Errorf("tracing off allocates %d times per connection", off.AllocsPerOp())
	}
}
