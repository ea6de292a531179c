package tunnel

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-yamux/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// A tunnel stream's window (the bytes its sender may have in flight, and
// what its reader may leave buffered here) starts at
// Config.StreamWindowKiB. One stream moves at most about a window per
// round trip, so over a long fat path a fixed window, not the path, would
// bound a bulk stream. The windows grow with the path instead, as HTTP/2
// implementations grow theirs with BDP pings. The multiplexer
// (libp2p/go-yamux) measures the tunnel's round trip with a ping when the
// tunnel starts and every rttInterval after. A receiver sends a window
// update each time its reader has consumed an eighth of the window (a
// strait patch of the multiplexer; upstream waits for half); a sender
// held up by the window sends one window per round trip, so such updates
// come eight times a round trip, while a sender held up by the path, or a
// slow reader, makes them rarer. When one comes less than a round trip
// after the last, the window doubles, up to Config.MaxStreamWindowKiB, as
// far as the peer's budget grants: it settles at a few times the
// bandwidth-delay product.
//
// What windows grow by past their start comes from a budget of
// Config.PeerWindowMiB per peer (windowBudget): the streams of the tunnels
// dialled to one Peer share one, those of the tunnels one peer (cluster)
// opened here another. A stream gives its growth back when it ends; a
// stream the budget cannot serve keeps the window it has. So what one
// peer's streams can leave buffered here is at most
// streams × StreamWindowKiB + PeerWindowMiB, whatever their windows grew
// to (TestWindowsGrowWithinBudget). Pool.Windows reports what each peer
// cluster's budgets have granted, Metrics.WindowRefused counts what they
// refused.

// windowBudget is what the windows of one peer's streams may grow by,
// together.
type windowBudget struct {
	max     int64 // bytes
	used    atomic.Int64
	refused prometheus.Counter // growths refused; nil: not counted
}

// newBudget is a budget of Config.PeerWindowMiB for the streams of
// tunnels dialled to (direction outbound) or opened by (inbound) a
// gateway of cluster, whose refusals count in Metrics.WindowRefused.
func (p *Pool) newBudget(direction, cluster string) *windowBudget {
	b := &windowBudget{max: int64(p.cfg.PeerWindowMiB) << 20}
	if p.m.WindowRefused != nil {
		b.refused = p.m.WindowRefused.WithLabelValues(direction, cluster)
	}
	return b
}

// errBudget refuses a window's growth; the stream keeps the window it has.
var errBudget = fmt.Errorf("peer window budget spent")

// spans hands the multiplexer one windowSpan per stream.
func (b *windowBudget) spans() (yamux.MemoryManager, error) { return &windowSpan{b: b}, nil }

// windowSpan is one stream's share of a windowBudget (a
// yamux.MemoryManager). The multiplexer reserves a stream's first window
// at the highest priority, 255: that is the stream's own and never
// refused; what it asks at lower priorities is growth, drawn from the
// budget. Done gives the growth back.
type windowSpan struct {
	b     *windowBudget
	mu    sync.Mutex
	grown int64
	done  bool
}

// Used is what the budget has granted and not had back, in bytes.
func (b *windowBudget) Used() int64 { return b.used.Load() }

func (s *windowSpan) ReserveMemory(size int, prio uint8) error {
	if prio == 255 || size <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errBudget
	}
	for {
		used := s.b.used.Load()
		if used+int64(size) > s.b.max {
			if s.b.refused != nil {
				s.b.refused.Inc()
			}
			return errBudget
		}
		if s.b.used.CompareAndSwap(used, used+int64(size)) {
			s.grown += int64(size)
			return nil
		}
	}
}

func (s *windowSpan) ReleaseMemory(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(int64(size), s.grown)
	if n <= 0 {
		return
	}
	s.grown -= n
	s.b.used.Add(-n)
}

func (s *windowSpan) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.b.used.Add(-s.grown)
	s.grown = 0
}

// WindowUse is what the windows of the streams to or from one peer
// cluster have grown by past Config.StreamWindowKiB now, drawn from its
// budgets.
type WindowUse struct {
	// Direction is outbound for the streams of tunnels dialled to the
	// cluster's gateways (one budget per gateway), inbound for those of
	// the tunnels its gateways opened here (one budget).
	Direction string
	Cluster   string
	Grown     int64 // bytes
}

// Windows returns the window growth of every peer cluster with a budget,
// by direction and cluster.
func (p *Pool) Windows() []WindowUse {
	p.mu.Lock()
	defer p.mu.Unlock()
	grown := map[WindowUse]int64{} // by Direction and Cluster
	for peer, pe := range p.peers {
		grown[WindowUse{Direction: "outbound", Cluster: peer.Cluster}] += pe.window.Used()
	}
	for cluster, b := range p.windows {
		grown[WindowUse{Direction: "inbound", Cluster: cluster}] += b.Used()
	}
	out := make([]WindowUse, 0, len(grown))
	for w, n := range grown {
		w.Grown = n
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b WindowUse) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Cluster, b.Cluster))
	})
	return out
}
