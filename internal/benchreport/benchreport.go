// Package benchreport prints benchmark figures in the one format `make
// bench` collects: a line "BENCH <name> <value> <unit>" per figure.
package benchreport

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Print writes one BENCH line to standard output.
func Print(name string, v float64, unit string) { fmt.Printf("BENCH %s %.3f %s\n", name, v, unit) }

// Ms is d in milliseconds, to the microsecond.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Percentile returns the p-quantile (0..1) of vs by nearest rank, sorting
// vs in place. NaN when vs is empty.
func Percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	sort.Float64s(vs)
	i := int(math.Ceil(p*float64(len(vs)))) - 1
	return vs[min(max(i, 0), len(vs)-1)]
}
