package fault

import (
	"math/rand/v2"
	"slices"
	"time"
)

// Rules are the faults in force, immutable; the controller replaces them
// whole and closes Changed of the old ones.
type Rules struct {
	self    string
	faults  []Fault
	changed chan struct{}
}

func newRules(self string, faults map[string]*Fault) *Rules {
	r := &Rules{self: self, changed: make(chan struct{})}
	for _, f := range faults {
		r.faults = append(r.faults, *f)
	}
	slices.SortFunc(r.faults, func(a, b Fault) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return r
}

// Changed is closed when these rules are replaced.
func (r *Rules) Changed() <-chan struct{} { return r.changed }

// Has reports whether a fault of kind k is in force; false on nil.
func (r *Rules) Has(k Kind) bool {
	return r.First(k) != nil
}

// First returns the first fault of kind k in force, or nil.
func (r *Rules) First(k Kind) *Fault {
	if r == nil {
		return nil
	}
	for i := range r.faults {
		if r.faults[i].Kind == k {
			return &r.faults[i]
		}
	}
	return nil
}

// matches reports whether f applies to traffic with peer: a known peer
// cluster, not this one, in f.Peers or any when f.Peers is empty.
func (r *Rules) matches(f *Fault, peer string) bool {
	if peer == "" || peer == r.self {
		return false
	}
	return len(f.Peers) == 0 || slices.Contains(f.Peers, peer)
}

// Effect is what the rules do to traffic with one peer.
type Effect struct {
	// Cut: the traffic fails at once (kill).
	Cut bool
	// Hold: the traffic waits without an answer (freeze, blackhole,
	// partition) until the rules change.
	Hold bool
	// Delay (latency) and Stall (loss) are waits before each write toward
	// the peer.
	Delay, Jitter time.Duration
	Loss          float64 // share in [0, 1]
}

// For returns the effect on traffic with peer ("": a local client or a
// connection whose peer is not known yet).
func (r *Rules) For(peer string) Effect {
	var e Effect
	if r == nil {
		return e
	}
	for i := range r.faults {
		f := &r.faults[i]
		switch f.Kind {
		case Kill:
			e.Cut = true
		case Freeze:
			e.Hold = true
		case Blackhole, Partition:
			e.Hold = e.Hold || r.matches(f, peer)
		case Latency:
			if r.matches(f, peer) {
				e.Delay += time.Duration(f.Delay)
				e.Jitter += time.Duration(f.Jitter)
			}
		case Loss:
			if r.matches(f, peer) {
				e.Loss = 1 - (1-e.Loss)*(1-f.Percent/100)
			}
		}
	}
	return e
}

// Refuse reports whether a new connection on a serving listener is
// closed at once (kill; drain refuses new work).
func (r *Rules) Refuse() bool { return r.Has(Kill) || r.Has(Drain) }

// Wait is a draw of the effect's wait before one write: Delay ± Jitter,
// plus a retransmission timeout when the write is lost.
func (e Effect) Wait(rto time.Duration) time.Duration {
	d := e.Delay
	if e.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*e.Jitter)+1)) - e.Jitter
	}
	if e.Loss > 0 && rand.Float64() < e.Loss {
		d += rto
	}
	return max(d, 0)
}

// Drop reports whether one gossip packet to or from the peer is dropped.
func (e Effect) Drop() bool {
	return e.Cut || e.Hold || e.Loss > 0 && rand.Float64() < e.Loss
}
