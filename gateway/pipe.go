package gateway

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/internal/connlimit"
)

// copyBufSize is the buffer of one direction of a copy: one read fills
// several TLS records, so a bulk transfer costs few system calls.
const copyBufSize = 128 << 10

// spliceChunk is how much one splice(2) call may move between two TCP
// sockets before the flow's activity clock is touched.
const spliceChunk = 4 << 20

var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// flow is two connections being spliced. The idle reaper closes both when
// no byte has moved either way for timeouts.idle.
type flow struct {
	a, b net.Conn
	last atomic.Int64 // unix nanoseconds of the last byte either way
}

func newFlow(a, b net.Conn) *flow {
	f := &flow{a: a, b: b}
	f.touch()
	return f
}

func (f *flow) touch() { f.last.Store(time.Now().UnixNano()) }

func (f *flow) close() {
	f.a.Close()
	f.b.Close()
}

// flowSet is every flow the gateway carries.
type flowSet struct {
	mu sync.Mutex
	m  map[*flow]struct{}
}

func (s *flowSet) add(f *flow) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*flow]struct{}{}
	}
	s.m[f] = struct{}{}
	s.mu.Unlock()
}

func (s *flowSet) remove(f *flow) {
	s.mu.Lock()
	delete(s.m, f)
	s.mu.Unlock()
}

// reap closes the flows idle since before cutoff and returns how many.
func (s *flowSet) reap(cutoff time.Time) int {
	c := cutoff.UnixNano()
	var idle []*flow
	s.mu.Lock()
	for f := range s.m {
		if f.last.Load() < c {
			idle = append(idle, f)
		}
	}
	s.mu.Unlock()
	for _, f := range idle {
		f.close()
	}
	return len(idle)
}

// reapIdle closes idle flows until the gateway stops.
func (g *Gateway) reapIdle() {
	defer g.wg.Done()
	every := min(max(g.cfg.Timeouts.Idle/4, 10*time.Millisecond), 10*time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case now := <-tick.C:
			if n := g.flows.reap(now.Add(-g.cfg.Timeouts.Idle)); n > 0 {
				g.metrics.idleClosed.Add(float64(n))
				g.log.Debug("closed idle connections", "count", n, "idle", g.cfg.Timeouts.Idle)
			}
		}
	}
}

// splice copies both ways until both directions end and returns the bytes
// copied a->b and b->a. Each side's write half is closed when its source
// ends, so half-closed protocols work.
//
// The a->b direction starts with ahead: bytes of a already read. With
// first, the b->a direction starts with first(f) (a->b already runs),
// which says how many bytes of b it sent to a, and copies only if it
// returns ok.
func (g *Gateway) splice(a, b net.Conn, ahead []byte, first func(*flow) (n int64, ok bool)) (ab, ba int64) {
	f := newFlow(a, b)
	g.flows.add(f)
	defer g.flows.remove(f)
	done := make(chan int64, 1)
	go func() {
		var n int64
		if len(ahead) > 0 {
			k, err := b.Write(ahead)
			n = int64(k)
			if err != nil {
				b.Close() // the other direction stops reading from it
				done <- n
				return
			}
		}
		n += f.copy(b, a)
		closeWrite(b)
		done <- n
	}()
	ok := true
	if first != nil {
		ba, ok = first(f)
	}
	if ok {
		ba += f.copy(a, b)
		closeWrite(a)
	} else {
		a.Close()
		b.Close()
	}
	ab = <-done
	return ab, ba
}

// meteredSplice splices a and b (ahead and first as splice's) and counts
// the connection, its bytes and its duration (from start) under dir
// ("inbound" or "outbound"), the service and the peer cluster. tx is the
// bytes copied a->b.
func (g *Gateway) meteredSplice(dir, svc, peer string, start time.Time, a, b net.Conn, ahead []byte, first func(*flow) (int64, bool)) (tx, rx int64) {
	src, dst := g.flowEnds(dir, peer)
	g.metrics.connections.WithLabelValues(dir, svc, src, dst, "ok").Inc()
	g.metrics.active.WithLabelValues(dir).Inc()
	defer g.metrics.active.WithLabelValues(dir).Dec()
	tx, rx = g.splice(a, b, ahead, first)
	g.metrics.bytes.WithLabelValues(dir, svc, src, dst, "tx").Add(float64(tx))
	g.metrics.bytes.WithLabelValues(dir, svc, src, dst, "rx").Add(float64(rx))
	g.metrics.duration.WithLabelValues(dir, svc, src, dst).Observe(time.Since(start).Seconds())
	return tx, rx
}

// flowEnds returns the source_cluster and destination_cluster labels of a
// flow in direction dir ("inbound" or "outbound") with the peer cluster
// peer: an inbound flow comes from the peer to this cluster, an outbound one
// goes from this cluster to the peer (Istio's reading of the two labels).
func (g *Gateway) flowEnds(dir, peer string) (src, dst string) {
	if dir == "inbound" {
		return peer, g.cfg.Cluster
	}
	return g.cfg.Cluster, peer
}

// copy moves src to dst until src ends or either fails. Between two TCP
// sockets the kernel moves the bytes (splice(2)); from a tunnel stream
// its received frames go to dst as they are (tunnel.Stream.WriteTo), and
// into one src is read straight into the frames (tunnel.Stream.ReadFrom);
// otherwise a pooled buffer does.
func (f *flow) copy(dst, src net.Conn) int64 {
	if dt, ok := unwrap(dst).(*net.TCPConn); ok {
		if st, ok := unwrap(src).(*net.TCPConn); ok {
			return f.spliceTCP(dt, st)
		}
	}
	if s, ok := unwrap(src).(*tunnel.Stream); ok {
		w := &touchWriter{f: f, w: dst}
		n, _ := s.WriteTo(w)
		if w.err != nil {
			dst.Close() // the other direction stops reading from it
		}
		return n
	}
	if s, ok := unwrap(dst).(*tunnel.Stream); ok {
		r := &touchReader{f: f, r: src}
		n, _ := s.ReadFrom(r)
		if r.err == nil {
			dst.Close() // the stream failed: the other direction stops reading from it
		}
		return n
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			f.touch()
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				dst.Close() // the other direction stops reading from it
				return n
			}
		}
		if rerr != nil {
			return n
		}
	}
}

// touchWriter writes to w, marks the flow active on every write and
// keeps w's error apart from the source's.
type touchWriter struct {
	f   *flow
	w   io.Writer
	err error
}

func (t *touchWriter) Write(p []byte) (int, error) {
	t.f.touch()
	n, err := t.w.Write(p)
	if err != nil {
		t.err = err
	}
	return n, err
}

// touchReader reads from r, marks the flow active on every read that
// gives bytes and keeps r's error (io.EOF included) apart from the
// destination's.
type touchReader struct {
	f   *flow
	r   io.Reader
	err error
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.f.touch()
	}
	if err != nil {
		t.err = err
	}
	return n, err
}

func (f *flow) spliceTCP(dst, src *net.TCPConn) int64 {
	var n int64
	for {
		lr := io.LimitedReader{R: src, N: spliceChunk}
		k, err := dst.ReadFrom(&lr)
		n += k
		if k > 0 {
			f.touch()
		}
		if err != nil {
			dst.Close()
			return n
		}
		if lr.N > 0 { // src ended before the chunk did
			return n
		}
	}
}

// unwrap returns the connection beneath a wrapper that only counts (a
// tracked connection, one in a listener's budget), never beneath one that
// transforms the bytes.
func unwrap(c net.Conn) net.Conn {
	for {
		switch w := c.(type) {
		case interface{ unwrapConn() net.Conn }:
			c = w.unwrapConn()
		case *connlimit.Conn:
			c = w.NetConn()
		default:
			return c
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.Close()
}
