package tunnel

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-yamux/v5"
)

// A tunnel stream's window (the bytes its sender may have in flight, and
// what its reader may leave buffered here) starts at
// Config.StreamWindowKiB. One stream moves at most about a window per
// round trip, so over a long fat path a fixed window, not the path, would
// bound a bulk stream. The windows grow with the path instead, as HTTP/2
// implementations grow theirs with BDP pings. The multiplexer
// (libp2p/go-yamux) measures the tunnel's round trip with a ping when the
// tunnel starts and every rttInterval after. A receiver sends a window
// update each time its reader has consumed half the window; a sender
// held up by the window sends one window per round trip, so such updates
// come every half round trip, while a sender held up by the path, or a
// slow reader, makes them rarer. When one comes less than four round trips
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
// to (TestWindowsGrowWithinBudget).

// windowBudget is what the windows of one peer's streams may grow by,
// together.
type windowBudget struct {
	max  int64 // bytes
	used atomic.Int64
}

// newBudget is a budget of Config.PeerWindowMiB.
func (p *Pool) newBudget() *windowBudget {
	return &windowBudget{max: int64(p.cfg.PeerWindowMiB) << 20}
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
