package tunnel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// delayConn delays what is written to it by a fixed time before it goes
// out, buffering without flow control (as the lab's links do): a long
// path on loopback.
type delayConn struct {
	net.Conn
	delay   time.Duration
	out     chan delayed
	closing chan struct{}
	done    chan struct{}
	once    sync.Once
}

type delayed struct {
	at time.Time
	b  []byte
}

func newDelayConn(c net.Conn, d time.Duration) *delayConn {
	dc := &delayConn{Conn: c, delay: d, out: make(chan delayed, 1<<16), closing: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(dc.done)
		for {
			select {
			case <-dc.closing:
				return
			case ch := <-dc.out:
				time.Sleep(time.Until(ch.at))
				if _, err := c.Write(ch.b); err != nil {
					return
				}
			}
		}
	}()
	return dc
}

func (c *delayConn) Write(p []byte) (int, error) {
	select {
	case c.out <- delayed{at: time.Now().Add(c.delay), b: bytes.Clone(p)}:
		return len(p), nil
	case <-c.closing:
		return 0, net.ErrClosed
	}
}

func (c *delayConn) Close() error {
	c.once.Do(func() { close(c.closing) })
	err := c.Conn.Close() // first: the pump may be stuck writing to it
	<-c.done
	return err
}

// longPath returns two multiplexer sessions over loopback TCP whose bytes
// take oneWay to arrive, with the pool's config for p and budgets of
// their own, and closes them when the test ends.
func longPath(t *testing.T, p *Pool, oneWay time.Duration) (client, server *yamux.Session, cb, sb *windowBudget) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	cb, sb = p.newBudget("outbound", "server"), p.newBudget("inbound", "client")
	if client, err = yamux.Client(newDelayConn(cc, oneWay), p.yamuxConfig(), cb.spans); err != nil {
		t.Fatal(err)
	}
	if server, err = yamux.Server(newDelayConn(sc, oneWay), p.yamuxConfig(), sb.spans); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	// The multiplexer measures the round trip windows grow against as the
	// session starts.
	deadline := time.Now().Add(5 * time.Second)
	for client.RTT() == 0 || server.RTT() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no round trip measured")
		}
		time.Sleep(time.Millisecond)
	}
	return client, server, cb, sb
}

// pair opens a stream on client and accepts it on server, so that each
// caller has the stream it means.
func pair(t *testing.T, client, server *yamux.Session) (*yamux.Stream, *yamux.Stream) {
	t.Helper()
	c, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// watchPeak records the most b had granted at once until stop is called.
func watchPeak(b *windowBudget) (stop func() int64) {
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var most int64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			most = max(most, b.Used())
			select {
			case <-done:
				peak <- max(most, b.Used())
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 { close(done); return <-peak }
}

// windowRefused is a Metrics.WindowRefused of its own.
func windowRefused() Metrics {
	return Metrics{WindowRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "w"}, []string{"direction", "peer_cluster"})}
}

// TestWindowsGrowWithinBudget: streams held up by their windows on a long
// path have their windows grown, and all of a peer's growth together
// never passes PeerWindowMiB (three streams that would each grow by
// 3.75 MiB share 6 MiB, so some growth is refused and counted); every
// byte arrives; what grew is given back when the streams end.
func TestWindowsGrowWithinBudget(t *testing.T) {
	p := &Pool{cfg: Config{StreamWindowKiB: 256, MaxStreamWindowKiB: 4096, PeerWindowMiB: 6}, m: windowRefused(), log: slog.New(slog.DiscardHandler)}
	const budget = 6 << 20
	client, server, cb, _ := longPath(t, p, 10*time.Millisecond)
	const bulk = 24 << 20
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	var bulkStreams []*yamux.Stream
	for range 3 {
		c, s := pair(t, client, server)
		bulkStreams = append(bulkStreams, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			if _, err := s.Write(make([]byte, bulk)); err != nil {
				errs <- err
			}
		}()
	}
	stop := watchPeak(cb)
	var readers sync.WaitGroup
	for _, s := range bulkStreams {
		readers.Add(1)
		go func() {
			defer readers.Done()
			if n, err := io.Copy(io.Discard, s); err != nil || n != bulk {
				errs <- fmt.Errorf("read %d of %d bytes: %v", n, bulk, err)
			}
		}()
	}
	readers.Wait()
	wg.Wait()
	peak := stop()
	if peak == 0 {
		t.Error("no window grew on a path the streams were held up by")
	}
	if peak > budget {
		t.Errorf("the budget's use peaked at %d, past %d", peak, budget)
	}
	if n := testutil.ToFloat64(p.m.WindowRefused.WithLabelValues("outbound", "server")); n == 0 {
		t.Error("no growth refused: three windows of 4 MiB cannot grow from a 6 MiB budget")
	}
	for _, s := range bulkStreams {
		s.Close()
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cb.Used() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if u := cb.Used(); u != 0 {
		t.Errorf("%d bytes of window still held after every stream ended", u)
	}
}

// TestUnreadStreamKeepsItsWindow: a stream whose reader does not read is
// held up by its reader, not the path: its window stays as it started and
// draws nothing from the budget.
func TestUnreadStreamKeepsItsWindow(t *testing.T) {
	p := &Pool{cfg: Config{StreamWindowKiB: 256, MaxStreamWindowKiB: 4096, PeerWindowMiB: 64}, m: windowRefused(), log: slog.New(slog.DiscardHandler)}
	client, server, cb, _ := longPath(t, p, 10*time.Millisecond)
	idle, s := pair(t, client, server)
	defer idle.Close()
	stop := watchPeak(cb)
	// More than its window: the write waits for a window update that never
	// comes, until the deadline.
	s.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := s.Write(make([]byte, 4<<20))
	if err == nil || n > 256<<10 {
		t.Errorf("wrote %d bytes to a stream nobody reads (err %v), want at most its window of %d", n, err, 256<<10)
	}
	if peak := stop(); peak != 0 {
		t.Errorf("an unread stream drew %d bytes from the budget", peak)
	}
	if n := testutil.ToFloat64(p.m.WindowRefused.WithLabelValues("outbound", "server")); n != 0 {
		t.Errorf("%v growths refused for a stream that never asked to grow", n)
	}
}

// TestNoBudgetNoGrowth: with PeerWindowMiB 0 a stream held up by its
// window on a long path keeps the window it started with and asks for no
// growth, so none is counted as refused.
func TestNoBudgetNoGrowth(t *testing.T) {
	p := &Pool{cfg: Config{StreamWindowKiB: 256, MaxStreamWindowKiB: 4096}, m: windowRefused(), log: slog.New(slog.DiscardHandler)}
	client, server, cb, _ := longPath(t, p, 10*time.Millisecond)
	c, s := pair(t, client, server)
	const bulk = 4 << 20
	go func() {
		defer s.Close()
		s.Write(make([]byte, bulk))
	}()
	if n, err := io.Copy(io.Discard, c); err != nil || n != bulk {
		t.Fatalf("read %d of %d bytes: %v", n, bulk, err)
	}
	if u := cb.Used(); u != 0 {
		t.Errorf("%d bytes drawn from a budget of 0", u)
	}
	if n := testutil.ToFloat64(p.m.WindowRefused.WithLabelValues("outbound", "server")); n != 0 {
		t.Errorf("%v growths refused where windows do not grow", n)
	}
}

// TestWindowsGiveBackOnSessionEnd: a session that ends (a tunnel closed
// with its streams) gives back what its streams' windows grew by.
func TestWindowsGiveBackOnSessionEnd(t *testing.T) {
	p := &Pool{cfg: Config{StreamWindowKiB: 256, MaxStreamWindowKiB: 4096, PeerWindowMiB: 64}, log: slog.New(slog.DiscardHandler)}
	client, server, cb, _ := longPath(t, p, 10*time.Millisecond)
	c, s := pair(t, client, server)
	go s.Write(make([]byte, 64<<20)) // the session ends under it
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for read := 0; cb.Used() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no window grew after %d bytes", read)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", read, err)
		}
		read += n
	}
	client.Close()
	if u := cb.Used(); u != 0 {
		t.Errorf("%d bytes of window still held after the session ended", u)
	}
}

// TestPeerResetTellsResetFromTunnelEnd: a stream the peer's multiplexer
// reset is told apart from one whose tunnel ended under it, since only
// the first certainly sent nothing on.
func TestPeerResetTellsResetFromTunnelEnd(t *testing.T) {
	p := &Pool{cfg: Config{StreamWindowKiB: 256, MaxStreamWindowKiB: 256}, log: slog.New(slog.DiscardHandler)}
	client, server, _, _ := longPath(t, p, 0)
	c, s := pair(t, client, server)
	s.Reset()
	_, err := c.Read(make([]byte, 1))
	if err == nil || !PeerReset(fmt.Errorf("read answer: %w", err)) {
		t.Errorf("a stream the peer reset: %v, PeerReset false", err)
	}
	c2, _ := pair(t, client, server)
	server.Close()
	_, err = c2.Read(make([]byte, 1))
	if err == nil || PeerReset(fmt.Errorf("read answer: %w", err)) {
		t.Errorf("a stream whose tunnel ended: %v, PeerReset true", err)
	}
	if PeerReset(io.EOF) || PeerReset(nil) {
		t.Error("PeerReset true for EOF or nil")
	}
}

// TestDeadAfterFollowsTheLongestRoundTrip: a tunnel whose pings wait
// behind a loaded link's queue gets four times the longest recent round
// trip before it is declared dead, and the allowance shrinks again, by
// an eighth a ping, as the queue drains; a slow ping on a tunnel that
// sent little extends nothing.
func TestDeadAfterFollowsTheLongestRoundTrip(t *testing.T) {
	tun := &tunnel{}
	const timeout = 500 * time.Millisecond
	if got := tun.deadAfter(timeout); got != timeout {
		t.Fatalf("no round trip yet: %v, want %v", got, timeout)
	}
	tun.notePing(400*time.Millisecond, false)
	if got := tun.deadAfter(timeout); got != timeout {
		t.Fatalf("after a slow ping on a tunnel that sent little: %v, want %v", got, timeout)
	}
	tun.notePing(400*time.Millisecond, true)
	if got := tun.deadAfter(timeout); got != 1600*time.Millisecond {
		t.Fatalf("after a 400ms ping on a loaded link: %v, want 1.6s", got)
	}
	for range 30 {
		tun.notePing(time.Millisecond, true)
	}
	if got := tun.deadAfter(timeout); got != timeout {
		t.Fatalf("after the queue drained: %v, want %v", got, timeout)
	}
}

// TestWindowsByPeerCluster: Pool.Windows sums the growth of every budget
// of a peer cluster by direction (the budgets of two gateways of one
// cluster together), lists a budget with nothing granted as 0, and a
// refused growth counts for its direction and cluster alone.
func TestWindowsByPeerCluster(t *testing.T) {
	p := NewPool(context.Background(), Config{PeerWindowMiB: 1}, nil, nil, nil, windowRefused(), slog.New(slog.DiscardHandler), nil)
	reserve := func(b *windowBudget, size int) error {
		t.Helper()
		span, _ := b.spans()
		return span.ReserveMemory(size, 0)
	}
	p.mu.Lock()
	b1 := &tunnelPeer{window: p.newBudget("outbound", "b")}
	b2 := &tunnelPeer{window: p.newBudget("outbound", "b")}
	c := &tunnelPeer{window: p.newBudget("outbound", "c")}
	p.peers[Peer{Addr: "127.0.0.1:1", Cluster: "b", Region: "r"}] = b1
	p.peers[Peer{Addr: "127.0.0.2:1", Cluster: "b", Region: "r"}] = b2
	p.peers[Peer{Addr: "127.0.0.3:1", Cluster: "c", Region: "r"}] = c
	in := p.newBudget("inbound", "b")
	p.windows["b"] = in
	p.mu.Unlock()
	for _, r := range []struct {
		b    *windowBudget
		size int
	}{{b1.window, 256 << 10}, {b2.window, 512 << 10}, {in, 128 << 10}} {
		if err := reserve(r.b, r.size); err != nil {
			t.Fatal(err)
		}
	}
	if err := reserve(b2.window, 768<<10); err == nil {
		t.Fatal("a budget of 1 MiB granted 1.25 MiB")
	}
	want := []WindowUse{{"inbound", "b", 128 << 10}, {"outbound", "b", 768 << 10}, {"outbound", "c", 0}}
	if got := p.Windows(); !slices.Equal(got, want) {
		t.Errorf("Windows() = %v, want %v", got, want)
	}
	for _, l := range []struct {
		direction, cluster string
		n                  float64
	}{{"outbound", "b", 1}, {"outbound", "c", 0}, {"inbound", "b", 0}} {
		if n := testutil.ToFloat64(p.m.WindowRefused.WithLabelValues(l.direction, l.cluster)); n != l.n {
			t.Errorf("refusals %s %s = %v, want %v", l.direction, l.cluster, n, l.n)
		}
	}
}
