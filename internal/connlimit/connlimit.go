// Package connlimit admits a listener's connections within a budget: at
// most Config.Max open at once and, on listeners whose connections start
// with a handshake (TLS), at most a few handshakes under way from one
// source address and every handshake finished within a deadline. What is
// over a budget is closed at once, before anything reads from it, so an
// unauthenticated client costs the process no more than one accept.
//
// Invariants:
//
//   - Listener.Open never exceeds Config.Max: a slot is taken when Accept
//     hands a connection out and given back exactly once, when that
//     connection is closed by its owner or by the handshake timer
//     (TestListenerBudget, TestListenerBudgetUnderConcurrency).
//   - One source holds at most Sources' limit of handshaking connections
//     over every listener sharing the Sources; its slot is given back when
//     the handshake ends (Conn.Established), times out, or the connection
//     closes. IPv6 sources count by their /64 (TestSourcesLimitHandshakes).
//   - A connection that is not Established within Config.HandshakeTimeout
//     is closed by a timer, whatever its reader is doing
//     (TestHandshakeDeadline).
package connlimit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says why a connection was refused.
type Reason string

const (
	// ReasonListener: the listener already held Config.Max connections.
	ReasonListener Reason = "listener"
	// ReasonSource: the client's address already had its limit of
	// handshakes under way (Sources).
	ReasonSource Reason = "source"
)

// Config is one listener's budget.
type Config struct {
	// Max is how many connections may be open at once; 0 means no limit.
	Max int
	// HandshakeTimeout is how long a connection may take to be
	// Established; then it is closed. 0: connections are established when
	// accepted (a listener without a handshake).
	HandshakeTimeout time.Duration
	// Sources caps concurrent handshakes per source address, shared by the
	// listeners that hold it. Nil: no cap. Used only with HandshakeTimeout.
	Sources *Sources
	// Refused, when set, is called for each connection refused, before it
	// is closed. It runs in Accept: keep it short.
	Refused func(why Reason, remote net.Addr)
	// TimedOut, when set, is called for each connection closed because
	// its handshake did not finish in time.
	TimedOut func(remote net.Addr)
}

// Listener is a net.Listener that admits connections within a Config.
// Accept returns *Conn values.
type Listener struct {
	net.Listener
	cfg  Config
	open atomic.Int64
}

// NewListener wraps ln in the budget cfg.
func NewListener(ln net.Listener, cfg Config) *Listener {
	if cfg.HandshakeTimeout <= 0 {
		cfg.Sources = nil
	}
	return &Listener{Listener: ln, cfg: cfg}
}

// Open returns how many of the listener's connections are open.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Accept waits for the next connection within the budget. Connections
// over it are closed (with a reset, so that the refusal leaves no
// TIME_WAIT behind) and Accept waits for the next one.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); l.cfg.Max > 0 && n > int64(l.cfg.Max) {
			l.open.Add(-1)
			l.refuse(c, ReasonListener)
			continue
		}
		lc := &Conn{Conn: c, l: l}
		if l.cfg.HandshakeTimeout > 0 {
			if s := l.cfg.Sources; s != nil {
				lc.src = sourceOf(c.RemoteAddr())
				if !s.acquire(lc.src) {
					l.open.Add(-1)
					l.refuse(c, ReasonSource)
					continue
				}
			}
			lc.timer = time.AfterFunc(l.cfg.HandshakeTimeout, lc.expire)
		} else {
			lc.state.Store(established)
		}
		return lc, nil
	}
}

func (l *Listener) refuse(c net.Conn, why Reason) {
	if l.cfg.Refused != nil {
		l.cfg.Refused(why, c.RemoteAddr())
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// States of a Conn.
const (
	handshaking int32 = iota
	established
	ended // timed out or closed before it was established
)

// Conn is a connection a Listener admitted. Closing it gives its slot
// back.
type Conn struct {
	net.Conn
	l      *Listener
	src    netip.Addr // valid when it holds a Sources slot
	timer  *time.Timer
	state  atomic.Int32
	closed sync.Once
	err    error
}

// Established says the connection's handshake finished: its handshake
// deadline and its source's handshake slot are released. It reports
// false when the connection had already timed out or closed.
func (c *Conn) Established() bool {
	if !c.state.CompareAndSwap(handshaking, established) {
		return c.state.Load() == established
	}
	c.timer.Stop()
	c.releaseSource()
	return true
}

// Close closes the connection and gives its slots back.
func (c *Conn) Close() error {
	c.closed.Do(func() {
		if c.state.CompareAndSwap(handshaking, ended) {
			c.timer.Stop()
			c.releaseSource()
		}
		c.err = c.Conn.Close()
		c.l.open.Add(-1)
	})
	return c.err
}

// NetConn returns the accepted connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection when the one beneath can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom and WriteTo keep the zero-copy paths of the connection beneath
// (splice(2) between two TCP sockets).
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}

func (c *Conn) expire() {
	if !c.state.CompareAndSwap(handshaking, ended) {
		return
	}
	c.releaseSource()
	if c.l.cfg.TimedOut != nil {
		c.l.cfg.TimedOut(c.RemoteAddr())
	}
	c.Close()
}

func (c *Conn) releaseSource() {
	if c.src.IsValid() {
		c.l.cfg.Sources.release(c.src)
	}
}

// Established marks c's handshake finished when c, or the connection a
// *tls.Conn or another wrapper with NetConn holds, is a *Conn; otherwise
// it does nothing.
func Established(c net.Conn) {
	for c != nil {
		if lc, ok := c.(*Conn); ok {
			lc.Established()
			return
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = w.NetConn()
	}
}

// Sources counts handshakes under way by source address. Listeners that
// share one cap a source's handshakes over all of them.
type Sources struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

// NewSources returns a cap of max concurrent handshakes per source
// address (an IPv4 address, or an IPv6 /64).
func NewSources(max int) *Sources {
	return &Sources{max: max, n: map[netip.Addr]int{}}
}

// Handshaking returns how many handshakes remote's source has under way.
func (s *Sources) Handshaking(remote net.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[sourceOf(remote)]
}

func (s *Sources) acquire(a netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[a] >= s.max {
		return false
	}
	s.n[a]++
	return true
}

func (s *Sources) release(a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[a] <= 1 {
		delete(s.n, a)
		return
	}
	s.n[a]--
}

// sourceOf is the address a source is counted by: an IPv4 address, or
// the /64 of an IPv6 one (a host gets a /64; counting its addresses one
// by one would let it open 2^64 handshakes).
func sourceOf(remote net.Addr) netip.Addr {
	var ap netip.AddrPort
	switch a := remote.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(remote.String()); err != nil {
			return netip.IPv4Unspecified()
		}
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}
