package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/straitmesh/strait/internal/fakeclock"
	"github.com/straitmesh/strait/sovereignty"
)

func TestTrafficRingCountsPerSecondOverTheWindow(t *testing.T) {
	clock := fakeclock.New(time.Unix(1_000_000, 0))
	r := newTrafficRing(clock.Now)
	r.add("demo/profile:8080", "euc", "pii-eu")
	r.add("demo/profile:8080", "euc", "pii-eu")
	clock.Add(time.Second)
	r.add("demo/profile:8080", "euc", "pii-eu")
	r.add("demo/echo:8080", "use", "none")
	tr := r.snapshot()
	if tr.Seconds != trafficSeconds || len(tr.Series) != 2 || !tr.End.Equal(time.Unix(1_000_002, 0)) {
		t.Fatalf("snapshot: %d seconds, %d series, end %s", tr.Seconds, len(tr.Series), tr.End)
	}
	echo, profile := tr.Series[0], tr.Series[1]
	if echo.Service != "demo/echo:8080" || echo.Counts[trafficSeconds-1] != 1 || echo.Total != 1 {
		t.Errorf("echo: %+v", echo.Total)
	}
	if profile.Class != "pii-eu" || profile.Counts[trafficSeconds-2] != 2 || profile.Counts[trafficSeconds-1] != 1 || profile.Total != 3 {
		t.Errorf("profile: last seconds %v, total %d", profile.Counts[trafficSeconds-3:], profile.Total)
	}
	// The slots of a second that passed without flows are cleared, not
	// left with the counts of trafficSeconds ago.
	clock.Add(trafficSeconds * time.Second)
	r.add("demo/echo:8080", "use", "none")
	tr = r.snapshot()
	if len(tr.Series) != 1 {
		t.Fatalf("after a whole window: %d series, want the idle one forgotten", len(tr.Series))
	}
	var sum uint32
	for _, c := range tr.Series[0].Counts {
		sum += c
	}
	// Idle for the whole window, the series was forgotten: it starts again.
	if sum != 1 || tr.Series[0].Total != 1 {
		t.Errorf("echo after a window: %d in the window, total %d; want 1 and 1", sum, tr.Series[0].Total)
	}
}

func TestTrafficRingIsBounded(t *testing.T) {
	clock := fakeclock.New(time.Unix(1_000_000, 0))
	r := newTrafficRing(clock.Now)
	for i := range maxTrafficSeries + 10 {
		r.add(fmt.Sprintf("ns/svc%d:80", i), "a", "none")
	}
	if tr := r.snapshot(); len(tr.Series) != maxTrafficSeries || tr.Overflow != 10 {
		t.Fatalf("%d series, overflow %d; want %d and 10", len(tr.Series), tr.Overflow, maxTrafficSeries)
	}
}

func TestRefusalFeedNeverBlocksAndCountsDrops(t *testing.T) {
	clients := prometheus.NewGauge(prometheus.GaugeOpts{Name: "c"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	f := newRefusalFeed(clients, dropped)
	deny := func(i int) sovereignty.Record {
		return sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionDeny, Status: i}
	}
	f.tap(deny(1))
	f.tap(sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionFiltered})
	recent, next, stop := f.follow()
	if len(recent) != 1 || recent[0].Status != 1 || testutil.ToFloat64(clients) != 1 {
		t.Fatalf("recent %v, clients %v; want the one refusal and 1 client", recent, testutil.ToFloat64(clients))
	}
	// A page that does not read: the feed goes on, its events are dropped.
	done := make(chan struct{})
	go func() {
		for i := range refusalBuffer + refusalsKept + 5 {
			f.tap(deny(i + 2))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the feed blocked on a page that does not read")
	}
	if got := testutil.ToFloat64(dropped); got != refusalsKept+5 {
		t.Errorf("dropped %v, want %d", got, refusalsKept+5)
	}
	if rec := <-next; rec.Status != 2 {
		t.Errorf("first event %d, want 2", rec.Status)
	}
	if recent, _, stop2 := f.follow(); len(recent) != refusalsKept || recent[refusalsKept-1].Status != refusalBuffer+refusalsKept+6 {
		t.Errorf("recent: %d kept, last %d", len(recent), recent[len(recent)-1].Status)
	} else {
		stop2()
	}
	stop()
	stop()
	if testutil.ToFloat64(clients) != 0 {
		t.Errorf("clients %v after stop, want 0", testutil.ToFloat64(clients))
	}
	_, next, _ = f.follow()
	f.close()
	if _, ok := <-next; ok {
		t.Error("a page's channel stays open after the feed closed")
	}
}
