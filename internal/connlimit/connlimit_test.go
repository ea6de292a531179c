package connlimit

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve accepts on l until it is closed, handing each connection to
// handle in a goroutine of its own.
func serve(t *testing.T, l *Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
}

func listen(t *testing.T, cfg Config) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return NewListener(ln, cfg)
}

// dialFrom connects from the loopback address src (127.0.0.0/8 is all
// loopback on Linux).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether a connection from src to addr is closed by the
// listener at once: reset while connecting, or closed before it says a
// thing.
func refused(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return true
	}
	defer c.Close()
	return closedWithin(c, 2*time.Second)
}

// closedWithin reports whether the peer closed c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestListenerBudget(t *testing.T) {
	var nRefused atomic.Int64
	l := listen(t, Config{Max: 3, Refused: func(why Reason, _ net.Addr) {
		if why != ReasonListener {
			t.Errorf("refused for %s, want %s", why, ReasonListener)
		}
		nRefused.Add(1)
	}})
	release := make(chan struct{})
	serve(t, l, func(c net.Conn) {
		defer c.Close()
		c.Write([]byte("x"))
		<-release
	})
	addr := l.Addr().String()
	for range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("admitted connection: %v", err)
		}
	}
	for range 5 {
		if !refused(t, "127.0.0.1", addr) {
			t.Fatal("a connection over the budget stayed open")
		}
	}
	if l.Open() != 3 || nRefused.Load() != 5 {
		t.Fatalf("open %d refused %d, want 3 and 5", l.Open(), nRefused.Load())
	}
	close(release)
	waitFor(t, "slot back", func() bool { return l.Open() == 0 })
	c := dialFrom(t, "127.0.0.1", addr)
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("after the slots came back: %v", err)
	}
}

func TestListenerBudgetUnderConcurrency(t *testing.T) {
	const max = 8
	var peak atomic.Int64
	l := listen(t, Config{Max: max, HandshakeTimeout: time.Second})
	serve(t, l, func(c net.Conn) {
		for n := int64(l.Open()); ; {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if c.(*Conn).Established() != true {
			t.Error("Established on an open connection reported false")
		}
		c.Close()
		c.Close() // twice gives the slot back once
	})
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				return
			}
			c.Read(make([]byte, 1))
			c.Close()
		}()
	}
	wg.Wait()
	waitFor(t, "every slot back", func() bool { return l.Open() == 0 })
	if peak.Load() > max {
		t.Fatalf("%d open at once, budget %d", peak.Load(), max)
	}
}

func TestHandshakeDeadline(t *testing.T) {
	const timeout = 150 * time.Millisecond
	var timedOut atomic.Int64
	l := listen(t, Config{Max: 10, HandshakeTimeout: timeout, Sources: NewSources(4), TimedOut: func(net.Addr) { timedOut.Add(1) }})
	established := make(chan struct{})
	serve(t, l, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 1)
		if _, err := c.Read(buf); err != nil {
			return // the silent one: closed by the timer
		}
		Established(c)
		close(established)
		c.Read(buf) // until the client closes
	})
	addr := l.Addr().String()
	start := time.Now()
	silent := dialFrom(t, "127.0.0.1", addr)
	talker := dialFrom(t, "127.0.0.1", addr)
	talker.Write([]byte("h"))
	<-established
	if !closedWithin(silent, 5*time.Second) {
		t.Fatal("a silent handshake was not closed")
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("closed after %s, before the deadline %s", d, timeout)
	}
	if closedWithin(talker, 3*timeout) {
		t.Fatal("an established connection was closed by the handshake deadline")
	}
	if timedOut.Load() != 1 {
		t.Fatalf("timed out %d, want 1", timedOut.Load())
	}
	waitFor(t, "the timed-out slot back", func() bool { return l.Open() == 1 })
}

func TestSourcesLimitHandshakes(t *testing.T) {
	src := NewSources(2)
	var bySource, byListener atomic.Int64
	onRefused := func(why Reason, _ net.Addr) {
		switch why {
		case ReasonSource:
			bySource.Add(1)
		case ReasonListener:
			byListener.Add(1)
		}
	}
	// Two listeners share the per-source count.
	a := listen(t, Config{Max: 100, HandshakeTimeout: 5 * time.Second, Sources: src, Refused: onRefused})
	b := listen(t, Config{Max: 100, HandshakeTimeout: 5 * time.Second, Sources: src, Refused: onRefused})
	conns := make(chan net.Conn, 100)
	for _, l := range []*Listener{a, b} {
		serve(t, l, func(c net.Conn) {
			conns <- c
			buf := make([]byte, 1)
			c.Read(buf)
			c.Close()
		})
	}
	first := dialFrom(t, "127.0.0.2", a.Addr().String())
	dialFrom(t, "127.0.0.2", b.Addr().String())
	waitFor(t, "two handshakes", func() bool { return src.Handshaking(first.LocalAddr()) == 2 })
	if !refused(t, "127.0.0.2", b.Addr().String()) {
		t.Fatal("a third handshake from one source was admitted with a limit of 2")
	}
	// Another source is not affected.
	other := dialFrom(t, "127.0.0.3", a.Addr().String())
	if closedWithin(other, 100*time.Millisecond) {
		t.Fatal("another source was refused")
	}
	if bySource.Load() != 1 || byListener.Load() != 0 {
		t.Fatalf("refused by source %d, by listener %d; want 1 and 0", bySource.Load(), byListener.Load())
	}
	// An established handshake gives its source slot back.
	c := <-conns
	for c.RemoteAddr().String() != first.LocalAddr().String() {
		conns <- c
		c = <-conns
	}
	Established(c)
	if n := src.Handshaking(first.LocalAddr()); n != 1 {
		t.Fatalf("source has %d handshakes after one was established, want 1", n)
	}
	again := dialFrom(t, "127.0.0.2", a.Addr().String())
	if closedWithin(again, 100*time.Millisecond) {
		t.Fatal("a source was refused after one of its handshakes finished")
	}
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7:443", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceOf(a).String(); got != tc.want {
			t.Errorf("sourceOf(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}
