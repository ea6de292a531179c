package drill

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Outcome is how one request ended.
type Outcome uint8

// Outcomes of a request.
const (
	OK Outcome = iota
	Failed
	Refused
)

// Sample is one request the drill made.
type Sample struct {
	Traffic int           // index into the drill's traffic
	From    string        // the cluster it entered
	Start   time.Duration // offset of its start from the drill's start
	Latency time.Duration
	Outcome Outcome
	// Cluster and Region served it (OK only); Reporter says who told:
	// "responder" when the service named itself, else "gateway".
	Cluster, Region, Reporter string
	Err                       string
}

// End is when the request ended, as an offset.
func (s Sample) End() time.Duration { return s.Start + s.Latency }

// histogram counts latencies in buckets 2% wide from 10µs to about 1000s.
type histogram struct {
	counts []uint32
	n      int
}

const (
	histMin    = 10 * time.Microsecond
	histGrowth = 1.02
	histBins   = 932 // histMin × 1.02^932 ≈ 1000s
)

func bin(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	i := int(math.Log(float64(d)/float64(histMin)) / math.Log(histGrowth))
	return min(i, histBins-1)
}

func (h *histogram) add(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint32, histBins)
	}
	h.counts[bin(d)]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint32, histBins)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the q-quantile (0..1), the upper edge of its bucket;
// 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	seen := 0
	for i, c := range h.counts {
		seen += int(c)
		if seen >= rank {
			return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(i+1)))
		}
	}
	return time.Duration(float64(histMin) * math.Pow(histGrowth, histBins))
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000 }

// second is one second of one traffic entry while it is recorded.
type second struct {
	Counts
	hist      histogram
	byRegion  map[string]int
	byCluster map[string]int
}

// recorder keeps what the drill's traffic measured: per traffic entry and
// second, counts, a latency histogram and where successes were served;
// and the samples failover and residency judging need.
type recorder struct {
	mu      sync.Mutex
	seconds [][]*second // [traffic][t]
	totals  []Counts
	// events are the samples kept for judging: every failure and refusal,
	// and every success (a success is 60 bytes; a 10000/s drill of an
	// hour keeps about 2 GB, so successes are kept only up to maxKept).
	events []Sample
	kept   int
	// violation is called for a success served where its class may not
	// go (set before traffic starts).
	onSample func(Sample)
}

const maxKept = 2_000_000

func newRecorder(traffic int) *recorder {
	return &recorder{seconds: make([][]*second, traffic), totals: make([]Counts, traffic)}
}

func (r *recorder) add(s Sample) {
	t := int(s.Start / time.Second)
	r.mu.Lock()
	secs := r.seconds[s.Traffic]
	for len(secs) <= t {
		secs = append(secs, &second{})
	}
	r.seconds[s.Traffic] = secs
	b := secs[t]
	b.Requests++
	r.totals[s.Traffic].Requests++
	switch s.Outcome {
	case OK:
		b.OK++
		r.totals[s.Traffic].OK++
		b.hist.add(s.Latency)
		if b.byRegion == nil {
			b.byRegion, b.byCluster = map[string]int{}, map[string]int{}
		}
		b.byRegion[orUnknown(s.Region)]++
		b.byCluster[orUnknown(s.Cluster)]++
	case Failed:
		b.Errors++
		r.totals[s.Traffic].Errors++
	case Refused:
		b.Refused++
		r.totals[s.Traffic].Refused++
	}
	if s.Outcome != OK || r.kept < maxKept {
		r.events = append(r.events, s)
		r.kept++
	}
	r.mu.Unlock()
	if r.onSample != nil {
		r.onSample(s)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// errorRate returns the share of failed requests (refusals apart) of all
// traffic that started in second t, and whether any request did.
func (r *recorder) errorRate(t int) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n, e int
	for _, secs := range r.seconds {
		if t < len(secs) {
			n += secs[t].Requests - secs[t].Refused
			e += secs[t].Errors
		}
	}
	if n == 0 {
		return 0, false
	}
	return 100 * float64(e) / float64(n), true
}

// failures returns traffic i's most frequent error and refusal reasons.
func (r *recorder) failures(i int) []Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := map[string]int{}
	for _, s := range r.events {
		if s.Traffic == i && s.Outcome != OK {
			count[s.Err]++
		}
	}
	out := make([]Failure, 0, len(count))
	for reason, n := range count {
		out = append(out, Failure{Reason: reason, Count: n})
	}
	slices.SortFunc(out, func(a, b Failure) int { return cmp.Or(b.Count-a.Count, strings.Compare(a.Reason, b.Reason)) })
	return out[:min(len(out), MaxFailures)]
}

// samples returns the kept samples.
func (r *recorder) samples() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sample(nil), r.events...)
}

// export returns per traffic its totals and seconds 0..n-1.
func (r *recorder) export(i, n int) (Counts, []Second) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Second, n)
	for t := range out {
		out[t].T = t
		if t >= len(r.seconds[i]) {
			continue
		}
		b := r.seconds[i][t]
		out[t].Counts = b.Counts
		out[t].P50, out[t].P90, out[t].P99 = ms(b.hist.quantile(.5)), ms(b.hist.quantile(.9)), ms(b.hist.quantile(.99))
		out[t].ByRegion, out[t].ByCluster = copyMap(b.byRegion), copyMap(b.byCluster)
	}
	return r.totals[i], out
}

func copyMap(m map[string]int) map[string]int {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
