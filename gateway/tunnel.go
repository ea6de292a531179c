package gateway

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
)

// noTunnelsFor is how long a peer that did not offer tunnels gets one TLS
// connection per stream before it is asked again.
const noTunnelsFor = time.Minute

var errTunnelDead = errors.New("tunnel to peer gateway is down")

// activityConn records when a byte last arrived: the keepalive's proof
// that the peer is alive, whatever the traffic.
type activityConn struct {
	net.Conn
	lastRead atomic.Int64 // unix nanoseconds
	shared   *pathHealth  // the peer's, shared by its tunnels; nil inbound
}

func (c *activityConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		now := time.Now().UnixNano()
		c.lastRead.Store(now)
		if c.shared != nil {
			c.shared.lastRead.Store(now)
		}
	}
	return n, err
}

// frameCoalescer joins a small data frame's header and body, which the
// multiplexer writes one after the other, into one write: one TLS record
// and one system call instead of two. Only the multiplexer's send loop
// writes, one write at a time. The header of a data frame always comes
// with its body right behind it; any other write goes through at once.
type frameCoalescer struct {
	net.Conn
	hdr  [yamuxHeader]byte
	held bool
	buf  []byte
}

const (
	yamuxHeader = 12
	yamuxData   = 0 // the data frame type
	// smallFrame is the largest body joined with its header: together
	// they fit one TLS record.
	smallFrame = 16<<10 - yamuxHeader
)

func (c *frameCoalescer) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
		if _, err := c.Conn.Write(c.buf); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == yamuxHeader && p[1] == yamuxData {
		if n := binary.BigEndian.Uint32(p[8:12]); n > 0 && n <= smallFrame {
			copy(c.hdr[:], p)
			c.held = true
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// tunnel is one multiplexed mTLS connection to or from a peer gateway.
type tunnel struct {
	sess    *yamux.Session
	conn    *activityConn
	peer    string // the peer's cluster
	addr    string // dialled address (outbound tunnels)
	streams atomic.Int64
	dead    atomic.Bool
	rtt     atomic.Int64 // last keepalive round trip, nanoseconds
}

// pathHealth is what all tunnels to one peer know of the path: they share
// it, so one cut off shows on all of them at once.
type pathHealth struct {
	lastRead atomic.Int64 // unix nanoseconds, any tunnel
	pending  atomic.Int64 // streams waiting for their answer, all tunnels
}

// yamuxConfig is the multiplexer's config. Keepalives are the gateway's
// own (keepalive), not yamux's: yamux would declare a peer dead only after
// its write timeout, which also bounds ordinary writes on a slow link.
func (g *Gateway) yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.KeepAliveInterval = time.Hour
	// A stream's write waits its turn behind the other streams' frames; on
	// a slow, busy link that can take a while, and the keepalive, not this,
	// decides that a peer is gone.
	c.ConnectionWriteTimeout = time.Minute
	c.MaxStreamWindowSize = uint32(g.cfg.Tunnels.StreamWindowKiB) << 10
	// Neither of yamux's stream timers: an unacknowledged open closes the
	// whole session (every stream on it), and a half-closed stream is
	// reset once the close timeout passes even while the other direction
	// still carries its answer. The answer deadline, the keepalive and the
	// idle timeout bound streams instead.
	c.StreamOpenTimeout = 0
	c.StreamCloseTimeout = 0
	c.AcceptBacklog = 1024
	c.LogOutput = nil
	c.Logger = yamuxLogger{g.log}
	return c
}

// yamuxLogger sends the multiplexer's messages to the gateway's log.
type yamuxLogger struct{ log *slog.Logger }

func (l yamuxLogger) Print(v ...any) {
	l.log.Debug("tunnel", "msg", strings.TrimSpace(fmt.Sprint(v...)))
}
func (l yamuxLogger) Printf(format string, v ...any) {
	l.log.Debug("tunnel", "msg", strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l yamuxLogger) Println(v ...any) {
	l.log.Debug("tunnel", "msg", strings.TrimSpace(fmt.Sprintln(v...)))
}

func newTunnel(g *Gateway, tc *tls.Conn, peer, addr string, path *pathHealth) (*tunnel, error) {
	server := path == nil
	ac := &activityConn{Conn: tc, shared: path}
	ac.lastRead.Store(time.Now().UnixNano())
	if path != nil {
		path.lastRead.Store(ac.lastRead.Load())
	}
	var sess *yamux.Session
	var err error
	fc := &frameCoalescer{Conn: ac}
	if server {
		sess, err = yamux.Server(fc, g.yamuxConfig())
	} else {
		sess, err = yamux.Client(fc, g.yamuxConfig())
	}
	if err != nil {
		return nil, fmt.Errorf("start tunnel with %s: %w", peer, err)
	}
	t := &tunnel{sess: sess, conn: ac, peer: peer, addr: addr}
	direction := "outbound"
	if server {
		direction = "inbound"
	}
	g.metrics.tunnels.WithLabelValues(direction).Inc()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.metrics.tunnels.WithLabelValues(direction).Dec()
		reason := t.keepalive(g.cfg.Tunnels.Keepalive, g.cfg.Tunnels.KeepaliveTimeout, g.ctx.Done())
		g.metrics.tunnelClosed.WithLabelValues(reason).Inc()
		g.log.Debug("tunnel closed", "peer", peer, "direction", direction, "reason", reason)
		if reason == "keepalive" && !server && g.tunnels != nil {
			g.tunnels.markDown(addr, errTunnelDead)
		}
	}()
	return t, nil
}

// keepalive pings the peer every interval and closes the tunnel when
// nothing at all has arrived from it for timeout while a ping was due: a
// dead or cut-off peer is noticed within interval+timeout. It returns why
// the tunnel ended.
func (t *tunnel) keepalive(interval, timeout time.Duration, stop <-chan struct{}) string {
	tick := time.NewTicker(min(interval, timeout) / 2)
	defer tick.Stop()
	var pinging atomic.Bool
	lastPing := time.Now()
	for {
		select {
		case <-t.sess.CloseChan():
			t.dead.Store(true)
			return "closed"
		case <-stop:
			t.dead.Store(true)
			t.sess.Close()
			return "shutdown"
		case now := <-tick.C:
			silent := now.Sub(time.Unix(0, t.conn.lastRead.Load()))
			if silent > timeout && pinging.Load() {
				// Close the socket beneath TLS first: a polite close would
				// try to send close_notify to a peer that is not reading,
				// and hold up the failure of every stream on the tunnel.
				t.dead.Store(true)
				if tc, ok := t.conn.Conn.(*tls.Conn); ok {
					tc.NetConn().Close()
				}
				t.sess.Close()
				return "keepalive"
			}
			if now.Sub(lastPing) >= interval && pinging.CompareAndSwap(false, true) {
				lastPing = now
				go func() {
					defer pinging.Store(false)
					start := time.Now() // yamux times from after its write; a fast answer can beat that
					if _, err := t.sess.Ping(); err == nil {
						t.rtt.Store(int64(time.Since(start)))
					}
				}()
			}
		}
	}
}

// fresh reports whether the tunnel looks alive right now: something
// arrived from the peer within the keepalive interval plus a round trip,
// and, when other streams wait for their answers, within two round trips.
// A peer cut off stops being fresh within milliseconds under traffic.
func (t *tunnel) fresh(keepalive time.Duration) bool {
	quiet := time.Since(time.Unix(0, t.conn.lastRead.Load()))
	rtt := time.Duration(t.rtt.Load())
	if p := t.conn.shared; p != nil && p.pending.Load() > 1 {
		if time.Since(time.Unix(0, p.lastRead.Load())) > 2*rtt+time.Millisecond {
			return false
		}
	}
	return quiet <= keepalive+rtt+20*time.Millisecond
}

// usable reports whether new streams may go on t.
func (t *tunnel) usable() bool {
	return !t.dead.Load() && !t.sess.IsClosed()
}

// open starts a stream on t.
func (t *tunnel) open() (net.Conn, error) {
	s, err := t.sess.OpenStream()
	if err != nil {
		if errors.Is(err, yamux.ErrRemoteGoAway) || errors.Is(err, yamux.ErrSessionShutdown) {
			t.dead.Store(true)
		}
		return nil, fmt.Errorf("open stream to %s: %w", t.peer, err)
	}
	t.streams.Add(1)
	if p := t.conn.shared; p != nil {
		p.pending.Add(1)
	}
	ts := &tunnelStream{Stream: s, t: t}
	ts.awaiting.Store(true)
	return ts, nil
}

// tunnelStream is one stream of a tunnel; closing it releases its count.
type tunnelStream struct {
	*yamux.Stream
	t        *tunnel
	once     sync.Once
	awaiting atomic.Bool // opened here and not answered yet
}

// answered marks the stream's answer read (or given up on).
func (s *tunnelStream) answered() {
	if s.awaiting.CompareAndSwap(true, false) {
		if p := s.t.conn.shared; p != nil {
			p.pending.Add(-1)
		}
	}
}

// Close ends the stream both ways: it sends the end of the stream and
// stops reads and writes still waiting on it.
func (s *tunnelStream) Close() error {
	s.answered()
	s.once.Do(func() {
		if s.t.streams.Add(-1) == 0 && s.t.dead.Load() && s.t.addr != "" {
			s.t.sess.Close() // a retired outbound tunnel ends with its last stream
		}
	})
	err := s.Stream.Close()
	s.Stream.SetDeadline(time.Now())
	return err
}

// CloseWrite half-closes the stream: the peer reads EOF, and the stream
// stays open for reading until the peer closes its side.
func (s *tunnelStream) CloseWrite() error { return s.Stream.Close() }

// tunnelPool keeps the gateway's outbound tunnels, a few per peer.
type tunnelPool struct {
	g     *Gateway
	mu    sync.Mutex
	peers map[string]*tunnelPeer // by data address
	done  bool
}

type tunnelPeer struct {
	path      pathHealth
	tunnels   []*tunnel
	dialing   chan struct{} // closed when the running dial ends; nil when none runs
	noTunnels time.Time     // before then, one TLS connection per stream
	result    *dialResult   // where the running dial reports, when a stream waits for it
	// down: the last tunnel died of its keepalive or the last dial failed,
	// and no dial has worked since. Streams try the peer last; a probe
	// dials it in the background until it answers.
	down    bool
	probing bool
}

func newTunnelPool(g *Gateway) *tunnelPool {
	return &tunnelPool{g: g, peers: map[string]*tunnelPeer{}}
}

// errNoTunnels says a peer gets one connection per stream.
var errNoTunnels = errors.New("peer does not offer tunnels")

// stream opens a stream to the gateway at addr on a pooled tunnel, dialling
// one when there is none. When the peer turns out not to offer tunnels the
// connection dialled for the tunnel is returned as the stream's own
// connection (direct): it used t's SNI and the flow ALPN. With errNoTunnels
// the caller dials a connection for the stream itself.
func (p *tunnelPool) stream(ctx context.Context, addr string, t wire.Target) (s net.Conn, direct *tls.Conn, err error) {
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			return nil, nil, errors.New("gateway is shutting down")
		}
		pe := p.peers[addr]
		if pe == nil {
			pe = &tunnelPeer{}
			p.peers[addr] = pe
		}
		if time.Now().Before(pe.noTunnels) {
			p.mu.Unlock()
			return nil, nil, errNoTunnels
		}
		best := pe.pick()
		if best != nil {
			if len(pe.tunnels) < p.g.cfg.Tunnels.PerPeer && pe.dialing == nil {
				p.startDial(pe, addr, t, nil, nil)
			}
			p.mu.Unlock()
			s, err := best.open()
			if err != nil && attempt < 2 {
				continue // that tunnel just died: another, or a new one
			}
			return s, nil, err
		}
		if ch := pe.dialing; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("wait for tunnel to %s: %w", addr, ctx.Err())
			}
		}
		var res dialResult
		p.startDial(pe, addr, t, ctx, &res)
		ch := pe.dialing
		p.mu.Unlock()
		<-ch
		if res.err != nil || res.direct != nil {
			return nil, res.direct, res.err
		}
		if attempt >= 2 {
			return nil, nil, errTunnelDead
		}
	}
}

// dialResult is what a dial started for a waiting stream found.
type dialResult struct {
	direct *tls.Conn
	err    error
}

// startDial dials a tunnel to addr. With ctx (a stream waits) it runs
// under ctx and reports to res; without, it runs in the background. Either
// way the connect timeout bounds it. p.mu is held.
func (p *tunnelPool) startDial(pe *tunnelPeer, addr string, t wire.Target, ctx context.Context, res *dialResult) {
	ch := make(chan struct{})
	pe.dialing = ch
	pe.result = res
	background := ctx == nil
	if background {
		ctx = p.g.ctx
	}
	p.g.wg.Add(1)
	go func() {
		defer p.g.wg.Done()
		dctx, cancel := context.WithTimeout(ctx, p.g.cfg.Timeouts.Connect)
		defer cancel()
		tun, direct, err := p.dial(dctx, addr, t, &pe.path)
		p.mu.Lock()
		res := pe.result
		pe.result = nil
		pe.dialing = nil
		if err != nil && !errors.Is(err, context.Canceled) {
			p.markDownLocked(pe, addr, err)
		} else if err == nil {
			pe.down = false
		}
		switch {
		case tun != nil && !p.done:
			pe.tunnels = append(pe.tunnels, tun)
		case tun != nil:
			tun.sess.Close()
		case direct != nil:
			pe.noTunnels = time.Now().Add(noTunnelsFor)
			if background {
				direct.Close()
				direct = nil
			}
		}
		p.mu.Unlock()
		if res != nil {
			res.direct, res.err = direct, err
		} else if direct != nil {
			direct.Close()
		}
		close(ch)
	}()
}

// dial opens an mTLS connection to addr offering the tunnel and the flow
// protocols, with t's SNI so that a peer without tunnels can take the
// connection as t's stream.
func (p *tunnelPool) dial(ctx context.Context, addr string, t wire.Target, path *pathHealth) (*tunnel, *tls.Conn, error) {
	g := p.g
	raw, err := g.dial(ctx, addr)
	if err != nil {
		g.metrics.tunnelDials.WithLabelValues("failed").Inc()
		return nil, nil, fmt.Errorf("dial gateway %s: %w", addr, err)
	}
	tcfg := g.id.ClientConfig(t.SNI())
	tcfg.NextProtos = []string{wire.ALPNTunnel, wire.ALPNFlow}
	tc := tls.Client(raw, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		g.metrics.tunnelDials.WithLabelValues("failed").Inc()
		return nil, nil, fmt.Errorf("mTLS handshake with gateway %s: %w", addr, err)
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != wire.ALPNTunnel {
		g.metrics.tunnelDials.WithLabelValues("no-tunnels").Inc()
		g.log.Info("peer gateway does not offer tunnels: one connection per stream", "addr", addr, "retry_in", noTunnelsFor)
		return nil, tc, nil
	}
	peer, err := identity.PeerID(cs)
	if err != nil {
		tc.Close()
		g.metrics.tunnelDials.WithLabelValues("failed").Inc()
		return nil, nil, fmt.Errorf("gateway %s: %w", addr, err)
	}
	tun, err := newTunnel(g, tc, peer.Cluster, addr, path)
	if err != nil {
		tc.Close()
		g.metrics.tunnelDials.WithLabelValues("failed").Inc()
		return nil, nil, err
	}
	g.metrics.tunnelDials.WithLabelValues("ok").Inc()
	return tun, nil, nil
}

// markDown records that addr did not answer and starts a probe.
func (p *tunnelPool) markDown(addr string, why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pe := p.peers[addr]; pe != nil {
		p.markDownLocked(pe, addr, why)
	}
}

func (p *tunnelPool) markDownLocked(pe *tunnelPeer, addr string, why error) {
	if p.done {
		return
	}
	if !pe.down {
		p.g.log.Info("peer gateway down: tried last until it answers again", "addr", addr, "err", why)
	}
	pe.down = true
	if pe.probing {
		return
	}
	pe.probing = true
	p.g.wg.Add(1)
	go p.probe(pe, addr)
}

// probe dials a down peer, backing off from the keepalive interval to
// probeMax, until a dial works (the peer is up again and its tunnel is
// pooled) or the gateway stops.
func (p *tunnelPool) probe(pe *tunnelPeer, addr string) {
	defer p.g.wg.Done()
	wait := p.g.cfg.Tunnels.Keepalive
	probeTarget := wire.Target{Namespace: "strait", Name: "probe", Port: 1}
	for {
		select {
		case <-p.g.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, probeMax)
		p.mu.Lock()
		if !pe.down || p.done || !p.known(addr) {
			// Up again, or gone from the federation: nothing to wait for.
			pe.probing = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(p.g.ctx, p.g.cfg.Timeouts.Connect)
		tun, direct, err := p.dial(ctx, addr, probeTarget, &pe.path)
		cancel()
		if direct != nil {
			direct.Close() // up, without tunnels
		}
		if err != nil {
			continue
		}
		p.mu.Lock()
		pe.down, pe.probing = false, false
		if tun != nil {
			if p.done {
				tun.sess.Close()
			} else {
				pe.tunnels = append(pe.tunnels, tun)
			}
		}
		if direct != nil {
			pe.noTunnels = time.Now().Add(noTunnelsFor)
		}
		p.mu.Unlock()
		p.g.log.Info("peer gateway answers again", "addr", addr)
		return
	}
}

// known reports whether the catalog still lists a gateway at addr.
func (p *tunnelPool) known(addr string) bool {
	if p.g.catalog == nil {
		return true
	}
	for _, c := range p.g.catalog.Snapshot().Clusters {
		if c.Gateway == addr {
			return true
		}
	}
	return false
}

// probeMax bounds the wait between two probes of a down peer.
const probeMax = 5 * time.Second

// isDown reports whether the peer at addr is down (markDown).
func (p *tunnelPool) isDown(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pe := p.peers[addr]
	return pe != nil && pe.down
}

// demote moves the candidates whose gateway is down behind the others,
// keeping both groups' order: it never removes one.
func (p *tunnelPool) demote(cands []route.Candidate) []route.Candidate {
	var down []route.Candidate
	out := cands[:0:0]
	for _, c := range cands {
		if !c.Local && p.isDown(c.Addr) {
			down = append(down, c)
			continue
		}
		out = append(out, c)
	}
	if len(down) == 0 {
		return cands
	}
	return append(out, down...)
}

// pick returns the live tunnel with the fewest streams, dropping dead
// ones. p.mu is held.
func (pe *tunnelPeer) pick() *tunnel {
	live := pe.tunnels[:0]
	var best *tunnel
	for _, t := range pe.tunnels {
		if !t.usable() {
			if t.streams.Load() == 0 {
				t.sess.Close() // the peer is draining or gone: let it go
			}
			continue
		}
		live = append(live, t)
		if best == nil || t.streams.Load() < best.streams.Load() {
			best = t
		}
	}
	clear(pe.tunnels[len(live):])
	pe.tunnels = live
	return best
}

// close closes every outbound tunnel.
func (p *tunnelPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	for _, pe := range p.peers {
		for _, t := range pe.tunnels {
			t.sess.Close()
		}
		pe.tunnels = nil
	}
}

// status lists the outbound tunnels by peer address.
func (p *tunnelPool) status() []admin.TunnelStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []admin.TunnelStatus{}
	now := time.Now()
	for addr, pe := range p.peers {
		if pe.down {
			out = append(out, admin.TunnelStatus{Addr: addr, State: "down"})
		}
		if now.Before(pe.noTunnels) {
			out = append(out, admin.TunnelStatus{Addr: addr, State: "per-stream"})
		}
		for _, t := range pe.tunnels {
			if t.sess.IsClosed() {
				continue
			}
			ts := admin.TunnelStatus{Peer: t.peer, Addr: addr, Streams: t.streams.Load(), RTTMs: float64(t.rtt.Load()) / 1e6, State: "open"}
			if t.dead.Load() {
				ts.State = "draining"
			}
			out = append(out, ts)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Addr < out[j].Addr || out[i].Addr == out[j].Addr && out[i].Streams > out[j].Streams
	})
	return out
}

// serveTunnel serves the streams of a tunnel a peer gateway opened. On
// shutdown it tells the peer to open no more streams, lets the open ones
// finish and then closes.
func (g *Gateway) serveTunnel(tc *tls.Conn, peer identity.ID) {
	tun, err := newTunnel(g, tc, peer.Cluster, "", nil)
	if err != nil {
		g.log.Warn("inbound tunnel", "peer", peer.Cluster, "err", err)
		return
	}
	var streams sync.WaitGroup
	defer streams.Wait()
	stopDrain := make(chan struct{})
	defer close(stopDrain)
	go func() {
		select {
		case <-stopDrain:
			return
		case <-g.draining:
		}
		// No new streams; the peer may have opened some before it heard.
		// Those arrive within a round trip and are reset unseen, which the
		// peer retries elsewhere. Closing before could break them midway.
		_ = tun.sess.GoAway()
		grace := min(max(2*time.Duration(tun.rtt.Load())+50*time.Millisecond, 100*time.Millisecond), g.cfg.Timeouts.Drain)
		quiet := time.Now().Add(grace)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for tun.sess.NumStreams() > 0 || time.Now().Before(quiet) {
			select {
			case <-stopDrain:
				return
			case <-tick.C:
			}
		}
		tun.sess.Close()
	}()
	for {
		ys, err := tun.sess.AcceptStream()
		if err != nil {
			return
		}
		tun.streams.Add(1)
		s := &tunnelStream{Stream: ys, t: tun}
		if !g.conns.add(s) {
			// Answered like any refusal, so the peer sends the flow elsewhere.
			g.metrics.refused.WithLabelValues("tunnel").Inc()
			s.SetWriteDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
			_ = wire.WriteAnswer(s, fmt.Errorf("gateway of %s is at its connection limit (%d)", g.cfg.Cluster, g.cfg.Limits.MaxConnections))
			s.Close()
			continue
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			defer g.conns.done(s)
			g.serveTunnelStream(s, peer)
		}()
	}
}

// serveTunnelStream reads a stream's header and serves it like a
// connection of its own.
func (g *Gateway) serveTunnelStream(s *tunnelStream, peer identity.ID) {
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	t, facts, err := wire.ReadStreamHeader(s)
	if err != nil {
		g.refuseInbound(s, peer, "", err)
		return
	}
	s.SetReadDeadline(time.Time{})
	g.serveStream(s, peer, t, facts)
}
