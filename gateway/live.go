package gateway

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/sovereignty"
)

// The live view behind the admin server's topology page (admin.Live):
// the flows sent in the last minutes and the refusals as they happen.
// Both are fed by the data plane and bounded in memory; neither ever
// makes a flow wait for a page.

// trafficSeconds is how far back the traffic ring counts, one slot a
// second.
const trafficSeconds = 300

// maxTrafficSeries caps the (service, destination cluster, class) series
// the ring keeps: 256 × 300 slots × 4 bytes is about 300 KiB at most.
// Flows of a series beyond the cap are counted as overflow only; a
// series with no flow for trafficSeconds is forgotten, freeing its place.
const maxTrafficSeries = 256

type trafficKey struct{ service, destination, class string }

type trafficSeries struct {
	counts [trafficSeconds]uint32 // by unix second modulo trafficSeconds
	total  uint64
	last   int64 // unix second of the latest flow
}

// trafficRing counts the flows a gateway sent per second, by service,
// destination cluster and residency class. Safe for concurrent use.
type trafficRing struct {
	now func() time.Time

	mu       sync.Mutex
	head     int64 // the newest unix second the slots hold
	series   map[trafficKey]*trafficSeries
	overflow uint64
}

func newTrafficRing(now func() time.Time) *trafficRing {
	return &trafficRing{now: now, series: map[trafficKey]*trafficSeries{}}
}

// add counts one flow.
func (r *trafficRing) add(service, destination, class string) {
	sec := r.now().Unix()
	k := trafficKey{service, destination, class}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(sec)
	s := r.series[k]
	if s == nil {
		if len(r.series) >= maxTrafficSeries {
			r.overflow++
			return
		}
		s = &trafficSeries{}
		r.series[k] = s
	}
	s.counts[sec%trafficSeconds]++
	s.total++
	s.last = sec
}

// advance moves the ring to sec: the slots of the seconds in between are
// cleared and series idle for the whole window forgotten. r.mu is held.
func (r *trafficRing) advance(sec int64) {
	if sec <= r.head {
		return
	}
	from := max(r.head+1, sec-trafficSeconds+1)
	for k, s := range r.series {
		if s.last <= sec-trafficSeconds {
			delete(r.series, k)
			continue
		}
		for t := from; t <= sec; t++ {
			s.counts[t%trafficSeconds] = 0
		}
	}
	r.head = sec
}

// snapshot is the window ending with the current second.
func (r *trafficRing) snapshot() admin.Traffic {
	sec := r.now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(sec)
	tr := admin.Traffic{End: time.Unix(sec+1, 0).UTC(), Seconds: trafficSeconds, Series: make([]admin.TrafficSeries, 0, len(r.series)), Overflow: r.overflow}
	for k, s := range r.series {
		ts := admin.TrafficSeries{Service: k.service, Destination: k.destination, Class: k.class, Counts: make([]uint32, trafficSeconds), Total: s.total}
		for i := range ts.Counts {
			ts.Counts[i] = s.counts[(sec-trafficSeconds+1+int64(i))%trafficSeconds]
		}
		tr.Series = append(tr.Series, ts)
	}
	slices.SortFunc(tr.Series, func(a, b admin.TrafficSeries) int {
		return strings.Compare(a.Service+"\x00"+a.Destination+"\x00"+a.Class, b.Service+"\x00"+b.Destination+"\x00"+b.Class)
	})
	return tr
}

// refusalsKept is how many of the latest refusals a page gets when it
// connects; refusalBuffer is how many a page may fall behind by before
// it loses some.
const (
	refusalsKept  = 100
	refusalBuffer = 64
)

// refusalFeed keeps the latest refusals of the audit trail and fans each
// new one out to the pages following them. Publishing never blocks: a
// page whose buffer is full misses the event (uiDropped).
type refusalFeed struct {
	clients prometheus.Gauge
	dropped prometheus.Counter

	mu     sync.Mutex
	recent []sovereignty.Record // oldest first, at most refusalsKept
	subs   map[chan sovereignty.Record]struct{}
	closed bool
}

func newRefusalFeed(clients prometheus.Gauge, dropped prometheus.Counter) *refusalFeed {
	return &refusalFeed{clients: clients, dropped: dropped, subs: map[chan sovereignty.Record]struct{}{}}
}

// tap is the audit trail's Tap: it keeps and sends on the refusals (deny
// records of any kind).
func (f *refusalFeed) tap(rec sovereignty.Record) {
	if rec.Decision != sovereignty.DecisionDeny {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if len(f.recent) == refusalsKept {
		copy(f.recent, f.recent[1:])
		f.recent = f.recent[:refusalsKept-1]
	}
	f.recent = append(f.recent, rec)
	for ch := range f.subs {
		select {
		case ch <- rec:
		default:
			f.dropped.Inc()
		}
	}
}

// follow subscribes a page; see admin.Live.
func (f *refusalFeed) follow() ([]sovereignty.Record, <-chan sovereignty.Record, func()) {
	ch := make(chan sovereignty.Record, refusalBuffer)
	f.mu.Lock()
	defer f.mu.Unlock()
	recent := slices.Clone(f.recent)
	if f.closed {
		close(ch)
		return recent, ch, func() {}
	}
	f.subs[ch] = struct{}{}
	f.clients.Inc()
	var once sync.Once
	return recent, ch, func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if _, ok := f.subs[ch]; ok {
				delete(f.subs, ch)
				f.clients.Dec()
			}
		})
	}
}

// close ends every subscription: the pages' streams end.
func (f *refusalFeed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
		f.clients.Dec()
	}
}

// Traffic is the flows the gateway sent in the last minutes (admin.Live).
func (g *Gateway) Traffic() admin.Traffic { return g.traffic.snapshot() }

// FollowRefusals follows the refusals of the audit trail (admin.Live).
func (g *Gateway) FollowRefusals() ([]sovereignty.Record, <-chan sovereignty.Record, func()) {
	return g.refusalFeed.follow()
}

// sent counts a flow of a that c's cluster took, for the live view.
func (a *attempt) sent(cluster string) {
	class := "none"
	if names := a.eng.ClassNames(a.p.Classes); len(names) > 0 {
		class = strings.Join(names, "+")
	}
	a.g.traffic.add(a.svc, cluster, class)
}
