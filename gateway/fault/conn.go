package fault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// RetransmitTimeout is the wait a lost TCP segment costs (loss): the
// receiver holds what follows until the sender retransmits. Linux's
// minimum retransmission timeout.
const RetransmitTimeout = 200 * time.Millisecond

// ErrKilled is what reads, writes and dials fail with while a kill is in
// force.
var ErrKilled = errors.New("fault kill in force: the gateway behaves as crashed")

// Conn is a connection under the controller's rules: with none in force
// it passes every call through; otherwise reads and writes fail (kill),
// wait until the rules change (freeze, blackhole, partition with its
// peer) or wait before writing (latency, loss toward its peer).
type Conn struct {
	net.Conn
	c         *Controller
	peer      atomic.Pointer[string]
	resolve   func() string // names the peer on first need (a dialled address); nil: none
	closeOnce sync.Once
	closed    chan struct{}
	rd, wd    atomic.Int64 // deadlines (UnixNano; 0: none) a held call keeps

	// Writes toward a peer under latency or loss go through a queue that
	// one goroutine writes out at each write's due time, so that a delay
	// is one way and pipelined (as on a long path), not paid once per
	// write in turn; a lost write holds back those behind it.
	wmu     sync.Mutex
	pending atomic.Int64 // queued writes and closes not yet done; changed under wmu
	queue   chan delayed
	lastDue time.Time
	werr    error // the first error of a queued write
}

// delayed is one queued write, or a close or half-close.
type delayed struct {
	b          []byte
	due        time.Time
	closeWrite bool
	close      bool
}

// Wrap puts conn under the rules as traffic with peer ("" for a local
// client or a peer not known yet; see SetPeer). Without fault mode it
// returns conn itself.
func (c *Controller) Wrap(conn net.Conn, peer string) net.Conn {
	if !c.Enabled() {
		return conn
	}
	cn := &Conn{Conn: conn, c: c, closed: make(chan struct{})}
	if peer != "" {
		cn.peer.Store(&peer)
	}
	c.track(cn)
	return cn
}

// SetPeer names the peer cluster of conn, or of the Conn beneath it
// (through NetConn), once the gateway verified it (an inbound mTLS
// handshake). It does nothing to a connection not under fault mode.
func SetPeer(conn net.Conn, peer string) {
	for conn != nil {
		if cn, ok := conn.(*Conn); ok {
			cn.peer.Store(&peer)
			return
		}
		w, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		conn = w.NetConn()
	}
}

// NetConn is the connection beneath (connlimit.Established looks
// through it).
func (cn *Conn) NetConn() net.Conn { return cn.Conn }

func (cn *Conn) peerName() string {
	if p := cn.peer.Load(); p != nil {
		return *p
	}
	if cn.resolve != nil {
		if p := cn.resolve(); p != "" {
			cn.peer.CompareAndSwap(nil, &p)
			return p
		}
	}
	return ""
}

// gate waits until the rules let a read or write through, or fails it.
func (cn *Conn) gate(write bool) error {
	for {
		r := cn.c.rules.Load()
		if r == nil {
			return nil
		}
		e := r.For(cn.peerName())
		if e.Cut {
			cn.closeNow()
			return ErrKilled
		}
		dl := &cn.rd
		if write {
			dl = &cn.wd
		}
		if e.Hold {
			if err := cn.wait(r.changed, 0, dl); err != nil {
				return err
			}
			continue
		}
		if write {
			if d := e.Wait(RetransmitTimeout); d > 0 {
				return cn.wait(nil, d, dl)
			}
		}
		return nil
	}
}

// wait waits for ch, or d when positive, whichever comes first, unless the
// connection closes or its deadline passes.
func (cn *Conn) wait(ch <-chan struct{}, d time.Duration, deadline *atomic.Int64) error {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	var dl <-chan time.Time
	if n := deadline.Load(); n != 0 {
		left := time.Until(time.Unix(0, n))
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(left)
		defer t.Stop()
		dl = t.C
	}
	select {
	case <-ch:
	case <-timeout:
	case <-dl:
		return os.ErrDeadlineExceeded
	case <-cn.closed:
		return net.ErrClosed
	}
	return nil
}

func (cn *Conn) Read(b []byte) (int, error) {
	if cn.c.rules.Load() == nil {
		return cn.Conn.Read(b)
	}
	if err := cn.gate(false); err != nil {
		return 0, err
	}
	n, err := cn.Conn.Read(b)
	// What arrived while a fault came into force is held with it.
	if n > 0 && cn.c.rules.Load() != nil {
		if gerr := cn.gate(false); gerr != nil {
			return 0, gerr
		}
	}
	return n, err
}

func (cn *Conn) Write(b []byte) (int, error) {
	if cn.c.rules.Load() == nil && !cn.queued() {
		return cn.Conn.Write(b)
	}
	d, err := cn.gateWrite()
	if err != nil {
		return 0, err
	}
	cn.wmu.Lock()
	if d == 0 && cn.pending.Load() == 0 {
		cn.wmu.Unlock()
		return cn.Conn.Write(b)
	}
	if err := cn.werr; err != nil {
		cn.wmu.Unlock()
		return 0, err
	}
	due := time.Now().Add(d)
	if due.Before(cn.lastDue) {
		due = cn.lastDue // in order, as TCP delivers
	}
	cn.lastDue = due
	cn.enqueueLocked(delayed{b: append([]byte(nil), b...), due: due})
	cn.wmu.Unlock()
	return len(b), nil
}

// gateWrite waits until the rules let a write through and returns how
// long it is delayed.
func (cn *Conn) gateWrite() (time.Duration, error) {
	for {
		r := cn.c.rules.Load()
		if r == nil {
			return 0, nil
		}
		e := r.For(cn.peerName())
		if e.Cut {
			cn.closeNow()
			return 0, ErrKilled
		}
		if !e.Hold {
			return e.Wait(RetransmitTimeout), nil
		}
		if err := cn.wait(r.changed, 0, &cn.wd); err != nil {
			return 0, err
		}
	}
}

func (cn *Conn) queued() bool { return cn.pending.Load() > 0 }

// enqueueLocked queues it, starting the writer on first use; called and
// returning with wmu held. The queue is bounded: a writer far ahead of
// the path waits, as on a full window.
func (cn *Conn) enqueueLocked(it delayed) {
	if cn.queue == nil {
		cn.queue = make(chan delayed, 1024)
		go cn.writeOut()
	}
	cn.pending.Add(1)
	q := cn.queue
	cn.wmu.Unlock()
	select {
	case q <- it:
	case <-cn.closed:
	}
	cn.wmu.Lock()
}

// writeOut writes queued writes at their due time until the connection
// closes.
func (cn *Conn) writeOut() {
	for {
		select {
		case <-cn.closed:
			return
		case it := <-cn.queue:
			if wait := time.Until(it.due); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-cn.closed:
					t.Stop()
					return
				}
			}
			var err error
			switch {
			case it.close:
				cn.closeNow()
				return
			case it.closeWrite:
				err = cn.closeWrite()
			default:
				_, err = cn.Conn.Write(it.b)
			}
			cn.wmu.Lock()
			cn.pending.Add(-1)
			if err != nil && cn.werr == nil {
				cn.werr = err
			}
			cn.wmu.Unlock()
		}
	}
}

// Close closes the connection and wakes its held calls; what is queued
// toward the peer (latency, loss) goes out first, as a kernel sends what
// a closed socket still holds.
func (cn *Conn) Close() error {
	cn.wmu.Lock()
	if cn.pending.Load() > 0 {
		cn.enqueueLocked(delayed{close: true, due: cn.lastDue})
		cn.wmu.Unlock()
		return nil
	}
	cn.wmu.Unlock()
	return cn.closeNow()
}

func (cn *Conn) closeNow() error {
	cn.closeOnce.Do(func() {
		close(cn.closed)
		cn.c.untrack(cn)
	})
	return cn.Conn.Close()
}

// CloseWrite half-closes the connection beneath when it can, after what
// is queued.
func (cn *Conn) CloseWrite() error {
	cn.wmu.Lock()
	if cn.pending.Load() > 0 {
		cn.enqueueLocked(delayed{closeWrite: true, due: cn.lastDue})
		cn.wmu.Unlock()
		return nil
	}
	cn.wmu.Unlock()
	return cn.closeWrite()
}

func (cn *Conn) closeWrite() error {
	if cw, ok := cn.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (cn *Conn) SetDeadline(t time.Time) error {
	cn.rd.Store(unixNano(t))
	cn.wd.Store(unixNano(t))
	return cn.Conn.SetDeadline(t)
}

func (cn *Conn) SetReadDeadline(t time.Time) error {
	cn.rd.Store(unixNano(t))
	return cn.Conn.SetReadDeadline(t)
}

func (cn *Conn) SetWriteDeadline(t time.Time) error {
	cn.wd.Store(unixNano(t))
	return cn.Conn.SetWriteDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Listener puts the connections it accepts under the rules; while a kill
// or a drain is in force it closes them as soon as they are accepted.
type Listener struct {
	net.Listener
	c *Controller
}

// Listen wraps ln; without fault mode it returns ln itself.
func (c *Controller) Listen(ln net.Listener) net.Listener {
	if !c.Enabled() {
		return ln
	}
	return &Listener{Listener: ln, c: c}
}

func (l *Listener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.c.rules.Load().Refuse() {
			conn.Close()
			continue
		}
		return l.c.Wrap(conn, ""), nil
	}
}

// DialFunc is how the gateway dials another gateway's data address.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Dial wraps dial: a dial fails at once while a kill is in force, waits
// for ctx while the peer at addr is held (freeze, blackhole, partition),
// and its connection is under the rules as traffic with that peer.
// peerOf names the cluster at a data address from the catalog's signed
// entries ("" when none is known). Without fault mode it returns dial.
func (c *Controller) Dial(dial DialFunc, peerOf func(addr string) string) DialFunc {
	if !c.Enabled() {
		return dial
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		peer := ""
		for {
			r := c.rules.Load()
			if r == nil {
				break
			}
			if peer == "" {
				peer = peerOf(addr)
			}
			e := r.For(peer)
			if e.Cut {
				return nil, fmt.Errorf("dial %s: %w", addr, ErrKilled)
			}
			if !e.Hold {
				break
			}
			select {
			case <-r.changed:
			case <-ctx.Done():
				return nil, fmt.Errorf("dial %s (cluster %s, held by a fault): %w", addr, peer, ctx.Err())
			}
		}
		conn, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		w := c.Wrap(conn, peer).(*Conn)
		if peer == "" {
			// Named when a rule first needs it: no lookup while no
			// fault is in force.
			w.resolve = func() string { return peerOf(addr) }
		}
		return w, nil
	}
}
