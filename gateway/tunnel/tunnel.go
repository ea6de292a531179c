package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/tunnel/record"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/retry"
)

// Config is a pool's settings; the gateway fills it from its own config
// (tunnels.* and timeouts.*).
type Config struct {
	// PerPeer is how many tunnels are kept to each peer (tunnels.perPeer).
	PerPeer int
	// Keepalive is the ping interval; KeepaliveTimeout how long a tunnel
	// may hear nothing while a ping is due before it is closed.
	Keepalive, KeepaliveTimeout time.Duration
	// Connect bounds one dial with its handshake (timeouts.connect).
	Connect time.Duration
	// Drain bounds how long an inbound tunnel waits for its streams when
	// the gateway drains (timeouts.drain).
	Drain time.Duration
	// StreamWindowKiB is each stream's flow-control window to begin with,
	// and what it keeps whatever the other streams do.
	StreamWindowKiB int
	// MaxStreamWindowKiB is the largest a stream's window grows to while
	// its sender is held up by the window (window.go); at most
	// StreamWindowKiB means windows do not grow (tunnels.maxStreamWindowKiB).
	MaxStreamWindowKiB int
	// PeerWindowMiB is what the windows of one peer's streams may grow past
	// StreamWindowKiB, all together, in each direction: the streams on the
	// tunnels dialled to a Peer share one such budget, and those on the
	// tunnels a peer (cluster) opened here another (tunnels.peerWindowMiB).
	PeerWindowMiB int
	// Mismatch, when set, is told of every connection the pool refused
	// because the peer's certificate named another cluster or region
	// (Peer), once each, whether a stream waited for it or not (a second
	// tunnel dialled in the background, a probe). The gateway counts and
	// audits them there.
	Mismatch func(*MismatchError)
	// MaxStreamsPerPeer caps the streams one peer (a cluster) has open on
	// the tunnels it opened to this gateway, all of them together; 0 means
	// no cap. See Pool.Serve for what happens over it and the memory bound
	// it gives (tunnels.maxStreamsPerPeer).
	MaxStreamsPerPeer int
}

// Metrics are the pool's collectors.
type Metrics struct {
	Tunnels *prometheus.GaugeVec   // strait_gateway_tunnels{direction}
	Dials   *prometheus.CounterVec // strait_gateway_tunnel_dials_total{result}
	Closed  *prometheus.CounterVec // strait_gateway_tunnels_closed_total{reason}
	// Refused counts streams refused over Config.MaxStreamsPerPeer.
	Refused prometheus.Counter
	// WindowRefused counts, by direction and peer cluster, the window
	// growths a peer's budget (Config.PeerWindowMiB) refused
	// (strait_gateway_tunnel_window_refused_total); nil: not counted.
	WindowRefused *prometheus.CounterVec
}

// Dialer opens the TCP connection beneath a tunnel.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// noTunnelsFor is how long a peer that did not offer tunnels gets one TLS
// connection per stream before it is asked again.
const noTunnelsFor = time.Minute

// PeerReset reports whether err says that the peer's multiplexer reset
// the stream (its backlog was full, or it had too many streams) rather
// than that the tunnel ended under it: the multiplexer tells the two
// apart by the error's shape, a reset frame's error alone or a
// yamux.StreamError from the peer, against the reset error joined with
// the session's end.
func PeerReset(err error) bool {
	for err != nil {
		if err == yamux.ErrStreamReset {
			return true
		}
		if se, ok := err.(*yamux.StreamError); ok {
			return se.Remote
		}
		err = errors.Unwrap(err) // nil for joined errors: the session's end
	}
	return false
}

// ErrDead says the tunnel to a peer died (its keepalive) and no other
// could be had.
var ErrDead = errors.New("tunnel to peer gateway is down")

// activityConn records when a byte last arrived: the keepalive's proof
// that the peer is alive, whatever the traffic.
type activityConn struct {
	net.Conn
	lastRead atomic.Int64 // unix nanoseconds
	shared   *pathHealth  // the peer's, shared by its tunnels; nil inbound
	now      func() time.Time
}

func (c *activityConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		now := c.now().UnixNano()
		c.lastRead.Store(now)
		if c.shared != nil {
			c.shared.lastRead.Store(now)
		}
	}
	return n, err
}

// frameWriter writes each multiplexer frame, which the multiplexer hands
// over header and body together in one write, in a buffer it gives back
// to its pool only afterwards: over the record layer (record.Conn) the
// frame is sealed straight from that buffer (WriteOwned) and its records
// leave in one system call. Only the multiplexer's send loop writes: a
// frame at a time, or the frames queued together (WriteFrames).
type frameWriter struct {
	net.Conn
	rc   *record.Conn // beneath Conn; nil on crypto/tls (Write, writev)
	sent atomic.Int64 // bytes written, for the keepalive (deadAfter)
}

func newFrameWriter(c net.Conn, rc *record.Conn) *frameWriter {
	return &frameWriter{Conn: c, rc: rc}
}

func (c *frameWriter) Write(p []byte) (int, error) {
	c.sent.Add(int64(len(p)))
	if c.rc != nil {
		return c.rc.WriteOwned(p)
	}
	return c.Conn.Write(p)
}

// WriteFrames writes the frames the send loop found queued together in
// one go (yamux.FramesWriter): sealed into one buffer over the record
// layer, one writev(2) otherwise.
func (c *frameWriter) WriteFrames(frames [][]byte) (int, error) {
	for _, f := range frames {
		c.sent.Add(int64(len(f)))
	}
	if c.rc != nil {
		return c.rc.WriteFrames(frames)
	}
	bufs := append(net.Buffers(nil), frames...) // WriteTo consumes its slice
	n, err := bufs.WriteTo(c.Conn)
	return int(n), err
}

// Secure is a connection between gateways just after its mTLS handshake,
// with what the record layer needs to take it over: SecureClient and
// SecureServer put a record.Raw beneath the TLS connection and a
// record.Capture in its config; Switch moves a tunnel onto a
// record.Conn, KeepTLS keeps any other connection on crypto/tls.
type Secure struct {
	TLS  *tls.Conn
	raw  *record.Raw
	keys *record.Capture
}

// SecureClient and SecureServer make the TLS side of raw with a copy of
// cfg that keeps the connection's traffic secrets for Switch. The
// server's copy sends no session tickets: crypto/tls would send them
// under the application key inside the handshake, before Switch could
// take over (no gateway resumes sessions).
func SecureClient(raw net.Conn, cfg *tls.Config) *Secure {
	return secure(raw, cfg.Clone(), tls.Client)
}

func SecureServer(raw net.Conn, cfg *tls.Config) *Secure {
	cfg = cfg.Clone()
	cfg.SessionTicketsDisabled = true
	return secure(raw, cfg, tls.Server)
}

// KeepTLS is the TLS connection, for a connection that stays with
// crypto/tls: reads beneath it are no longer held to record boundaries,
// and the traffic secrets captured for Switch are dropped.
func (s *Secure) KeepTLS() *tls.Conn {
	s.raw.Release()
	s.keys.Forget()
	return s.TLS
}

func secure(raw net.Conn, cfg *tls.Config, side func(net.Conn, *tls.Config) *tls.Conn) *Secure {
	keys := &record.Capture{}
	cfg.KeyLogWriter = keys
	r := record.NewRaw(raw)
	return &Secure{TLS: side(r, cfg), raw: r, keys: keys}
}

// Switch moves the connection onto the record layer (a *record.Conn)
// after its handshake; when the record layer cannot take it (not TLS 1.3
// with one of its suites), it is the TLS connection itself.
func (s *Secure) Switch(isClient bool) (net.Conn, error) {
	rc, err := record.Switch(s.TLS, s.raw, s.keys, isClient)
	switch {
	case err == nil:
		return rc, nil
	case errors.Is(err, record.ErrUnsupported):
		return s.KeepTLS(), nil
	default:
		return nil, err
	}
}

// tunnel is one multiplexed mTLS connection to or from a peer gateway.
type tunnel struct {
	sess    *yamux.Session
	conn    *activityConn
	peer    string // the peer's cluster (its certificate's)
	key     Peer   // the peer dialled (outbound tunnels); zero inbound
	streams atomic.Int64
	dead    atomic.Bool
	sent    *atomic.Int64 // bytes written to the peer (frameWriter)
	rtt     atomic.Int64  // last keepalive round trip, nanoseconds
	// rttPeak is the longest recent keepalive round trip, nanoseconds:
	// each ping's, or the last peak less an eighth, whichever is longer.
	rttPeak atomic.Int64
	now     func() time.Time
	ping    time.Duration // the keepalive interval

	why atomic.Pointer[string] // why the pool closed the session, when it did
	// chain is the peer's verified certificate chain, leaf first, as of
	// the handshake (Recheck verifies it again).
	chain    []*x509.Certificate
	inbound  bool
	draining atomic.Bool // inbound: the gateway drains, and told the peer
}

// pathHealth is what all tunnels to one peer know of the path: they share
// it, so one cut off shows on all of them at once.
type pathHealth struct {
	lastRead atomic.Int64 // unix nanoseconds, any tunnel
	pending  atomic.Int64 // streams waiting for their answer, all tunnels
}

// Multiplexer settings the configuration does not reach.
const (
	// frameSize is the most data one frame carries: a bulk stream's frames
	// take turns with the other streams' at this grain.
	frameSize = 128 << 10
	// rttInterval is how often the multiplexer measures the round trip
	// that windows grow against (window.go).
	rttInterval = 10 * time.Second
)

// yamuxConfig is the multiplexer's config. Keepalives are the pool's
// own (keepalive), not yamux's: yamux would declare a peer dead only after
// its write timeout, which also bounds ordinary writes on a slow link.
func (p *Pool) yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.KeepAliveInterval = time.Hour
	c.MeasureRTTInterval = rttInterval
	// A stream's write waits its turn behind the other streams' frames; on
	// a slow, busy link that can take a while, and the keepalive, not this,
	// decides that a peer is gone.
	c.ConnectionWriteTimeout = time.Minute
	c.InitialStreamWindowSize = uint32(p.cfg.StreamWindowKiB) << 10
	c.MaxStreamWindowSize = uint32(max(p.cfg.MaxStreamWindowKiB, p.cfg.StreamWindowKiB)) << 10
	if p.cfg.PeerWindowMiB <= 0 {
		// No budget to grow from: windows keep their start, and no growth
		// is asked for (and counted as refused) on every window update.
		c.MaxStreamWindowSize = c.InitialStreamWindowSize
	}
	c.MaxMessageSize = frameSize + yamuxHeader
	// A stream taking a bulk transfer tells its sender so at least this
	// often, whatever its window: on a link whose queue holds the
	// keepalive's ping for long, the sender still hears from the peer.
	c.WindowUpdateInterval = min(p.cfg.Keepalive, p.cfg.KeepaliveTimeout) / 2
	c.AcceptBacklog = 1024
	// A stream's ACK rides on its answer (the handler dials the service
	// first): the opener is woken once per new stream, not twice. So a
	// stream opened here counts against the open backlog until its answer;
	// the peer, not this, bounds how many wait (its per-peer cap answers
	// ERR at once, and it resets streams past MaxIncomingStreams).
	c.LazyAck = true
	c.OpenBacklog = math.MaxInt32
	// The per-peer cap is the pool's (Serve), which answers ERR over it;
	// the multiplexer's own resets a stream only past four times that.
	c.MaxIncomingStreams = math.MaxUint32
	if n := p.cfg.MaxStreamsPerPeer; n > 0 {
		c.MaxIncomingStreams = uint32(4*n + 16)
	}
	c.LogOutput = yamuxLog{p.log}
	return c
}

// yamuxHeader is the length of a multiplexer frame's header.
const yamuxHeader = 12

// yamuxLog sends the multiplexer's messages to the gateway's log.
type yamuxLog struct{ log *slog.Logger }

func (l yamuxLog) Write(b []byte) (int, error) {
	l.log.Debug("tunnel", "msg", strings.TrimSpace(string(b)))
	return len(b), nil
}

// newTunnel starts the multiplexer over sc, switched to the record layer
// when it can be.
func (p *Pool) newTunnel(sc *Secure, peer string, key Peer, path *pathHealth, budget *windowBudget) (*tunnel, error) {
	server := path == nil
	conn, err := sc.Switch(!server)
	if err != nil {
		return nil, fmt.Errorf("tunnel with %s: %w", peer, err)
	}
	rc, _ := conn.(*record.Conn)
	ac := &activityConn{Conn: conn, shared: path, now: p.now}
	ac.lastRead.Store(p.now().UnixNano())
	if path != nil {
		path.lastRead.Store(ac.lastRead.Load())
	}
	var sess *yamux.Session
	fw := newFrameWriter(ac, rc)
	cfg := p.yamuxConfig()
	if rc != nil {
		cfg.ReadBufSize = 0 // the record layer reads many records at a time
	}
	if server {
		sess, err = yamux.Server(fw, cfg, budget.spans)
	} else {
		// The peer opens streams here only to tell of its drain
		// (heedNotices): more than a couple at once are reset unread.
		cfg.MaxIncomingStreams = 2
		sess, err = yamux.Client(fw, cfg, budget.spans)
	}
	if err != nil {
		return nil, fmt.Errorf("start tunnel with %s: %w", peer, err)
	}
	t := &tunnel{sess: sess, conn: ac, sent: &fw.sent, peer: peer, key: key, now: p.now, ping: p.cfg.Keepalive,
		chain: sc.TLS.ConnectionState().PeerCertificates, inbound: server}
	direction := "outbound"
	if server {
		direction = "inbound"
	}
	p.m.Tunnels.WithLabelValues(direction).Inc()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.m.Tunnels.WithLabelValues(direction).Dec()
		reason := t.keepalive(p.cfg.Keepalive, p.cfg.KeepaliveTimeout, p.ctx.Done())
		p.m.Closed.WithLabelValues(reason).Inc()
		p.log.Debug("tunnel closed", "peer", peer, "direction", direction, "reason", reason)
		if reason == "keepalive" && !server {
			p.markDown(key, ErrDead)
		}
	}()
	if !server {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t.heedNotices(p.cfg.Connect)
		}()
	}
	return t, nil
}

// closeSocket closes the socket beneath the tunnel's TLS at once, with no
// close_notify.
func (t *tunnel) closeSocket() {
	if c, ok := t.conn.Conn.(interface{ NetConn() net.Conn }); ok {
		c.NetConn().Close()
	}
}

// drainNotice is what the gateway that accepted a tunnel sends, on a
// stream it opens, when it drains: the dialling side opens no more
// streams on the tunnel and closes it once its last stream ends. The
// multiplexer's own GOAWAY would do, but libp2p's yamux ends the whole
// session on receiving one, and with it the streams still carrying
// answers.
const drainNotice = "DRAIN\n"

// heedNotices serves the streams the peer opens on an outbound tunnel:
// a drain notice retires the tunnel; anything else is closed unread.
func (t *tunnel) heedNotices(wait time.Duration) {
	for {
		s, err := t.sess.AcceptStream()
		if err != nil {
			return
		}
		s.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, len(drainNotice))
		_, err = io.ReadFull(s, buf)
		s.Close()
		if err != nil || string(buf) != drainNotice {
			continue
		}
		t.dead.Store(true)
		if t.streams.Load() == 0 {
			t.sess.Close()
		}
	}
}

// noticeDrain tells the peer that dialled t that this gateway drains
// (drainNotice).
func (t *tunnel) noticeDrain(wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := t.sess.OpenStream(ctx)
	if err != nil {
		return
	}
	s.SetWriteDeadline(time.Now().Add(wait))
	_, _ = io.WriteString(s, drainNotice)
	s.Close()
}

// keepalive pings the peer every interval and closes the tunnel when
// nothing at all has arrived from it for timeout while a ping was due: a
// dead or cut-off peer is noticed within interval+timeout. It returns why
// the tunnel ended.
func (t *tunnel) keepalive(interval, timeout time.Duration, stop <-chan struct{}) string {
	tick := time.NewTicker(min(interval, timeout) / 2)
	defer tick.Stop()
	var pinging atomic.Bool
	lastPing := t.now()
	var lastSent int64
	for {
		select {
		case <-t.sess.CloseChan():
			t.dead.Store(true)
			if why := t.why.Load(); why != nil {
				return *why
			}
			return "closed"
		case <-stop:
			t.dead.Store(true)
			t.sess.Close()
			return "shutdown"
		case now := <-tick.C:
			silent := now.Sub(time.Unix(0, t.conn.lastRead.Load()))
			if silent > t.deadAfter(timeout) && pinging.Load() {
				// Close the socket beneath TLS first: a polite close would
				// try to send close_notify to a peer that is not reading,
				// and hold up the failure of every stream on the tunnel.
				t.dead.Store(true)
				t.closeSocket()
				t.sess.Close()
				return "keepalive"
			}
			if now.Sub(lastPing) >= interval && pinging.CompareAndSwap(false, true) {
				lastPing = now
				// What went out since the last ping is what this one may
				// wait behind.
				sent := t.sent.Load()
				queued := sent - lastSent
				lastSent = sent
				go func() {
					defer pinging.Store(false)
					start := time.Now() // yamux times from after its write; a fast answer can beat that
					if _, err := t.sess.Ping(); err == nil {
						t.notePing(time.Since(start), queued >= loadedLink)
					}
				}()
			}
		}
	}
}

// loadedLink is what a tunnel must have sent in the keepalive interval
// before a ping for the ping's round trip to count as a queue's
// (deadAfter): a tunnel that sent less has no queue a ping could wait in.
const loadedLink = 1 << 20

// notePing records a keepalive ping's round trip; loaded says the tunnel
// had sent at least loadedLink since the ping before, so that the round
// trip may be a queue's.
func (t *tunnel) notePing(rtt time.Duration, loaded bool) {
	t.rtt.Store(int64(rtt))
	peak := t.rttPeak.Load()
	peak -= peak / 8
	if loaded {
		peak = max(int64(rtt), peak)
	}
	t.rttPeak.Store(peak)
}

// deadAfter is how long the peer may be silent, while a ping is due,
// before the tunnel is declared dead: timeout, or four times the longest
// recent round trip of a ping sent on a loaded link when that is longer.
// A loaded link queues a ping behind the bytes sent before it, so that its
// round trip grows with the queue, and a peer behind a long queue is slow,
// not gone. On a tunnel that sends little, a slow ping is no queue's, and
// the timeout stands.
func (t *tunnel) deadAfter(timeout time.Duration) time.Duration {
	return max(timeout, 4*time.Duration(t.rttPeak.Load()))
}

// fresh reports whether the tunnel looks alive right now: something
// arrived from the peer within the keepalive interval plus a round trip,
// and, when other streams wait for their answers, within two round trips.
// A peer cut off stops being fresh within milliseconds under traffic.
func (t *tunnel) fresh(keepalive time.Duration) bool {
	now := t.now()
	quiet := now.Sub(time.Unix(0, t.conn.lastRead.Load()))
	rtt := time.Duration(t.rtt.Load())
	if p := t.conn.shared; p != nil && p.pending.Load() > 1 {
		if now.Sub(time.Unix(0, p.lastRead.Load())) > 2*rtt+time.Millisecond {
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
	s, err := t.sess.OpenStream(context.Background())
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
	ts := &Stream{Stream: s, t: t}
	ts.awaiting.Store(true)
	return ts, nil
}

// Stream is one stream of a tunnel; closing it releases its count.
type Stream struct {
	*yamux.Stream
	t        *tunnel
	once     sync.Once
	awaiting atomic.Bool // opened here and not answered yet
}

// Answered marks the stream's answer read (or given up on).
func (s *Stream) Answered() {
	if s.awaiting.CompareAndSwap(true, false) {
		if p := s.t.conn.shared; p != nil {
			p.pending.Add(-1)
		}
	}
}

// Close ends the stream both ways: it sends the end of the stream and
// stops reads and writes still waiting on it.
func (s *Stream) Close() error {
	s.Answered()
	s.once.Do(func() {
		if s.t.streams.Add(-1) == 0 && s.t.dead.Load() && s.t.key.Addr != "" {
			s.t.sess.Close() // a retired outbound tunnel ends with its last stream
		}
	})
	err := s.Stream.Close()
	s.Stream.SetDeadline(time.Now())
	return err
}

// CloseWrite half-closes the stream: the peer reads EOF, and the stream
// stays open for reading until the peer closes its side.
func (s *Stream) CloseWrite() error { return s.Stream.CloseWrite() }

// Pool keeps a gateway's outbound tunnels, a few per peer, and serves the
// inbound ones. Its goroutines end once its context ends and every tunnel
// has closed (Close, then Wait).
type Pool struct {
	cfg   Config
	id    *identity.Bundle
	dial  Dialer
	known func(Peer) bool
	m     Metrics
	log   *slog.Logger
	now   func() time.Time
	ctx   context.Context
	wg    sync.WaitGroup

	mu      sync.Mutex
	peers   map[Peer]*tunnelPeer     // by address and the identity expected there
	inbound map[string][]*tunnel     // the tunnels each peer (cluster) opened here
	windows map[string]*windowBudget // what the windows of streams each peer opened may grow by
	done    bool
}

type tunnelPeer struct {
	path      pathHealth
	window    *windowBudget // what its streams' windows may grow by
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

// NewPool returns a pool that dials with dial (a net.Dialer's when nil)
// and id's certificate, and stops its goroutines when ctx ends. known
// reports whether the catalog still lists the peer (its cluster and
// region at its address; a down peer that is gone is no longer probed);
// nil means always. now is the clock (time.Now when nil).
func NewPool(ctx context.Context, cfg Config, id *identity.Bundle, dial Dialer, known func(Peer) bool, m Metrics, log *slog.Logger, now func() time.Time) *Pool {
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
	}
	if known == nil {
		known = func(Peer) bool { return true }
	}
	if now == nil {
		now = time.Now
	}
	return &Pool{cfg: cfg, id: id, dial: dial, known: known, m: m, log: log, now: now, ctx: ctx, peers: map[Peer]*tunnelPeer{},
		inbound: map[string][]*tunnel{}, windows: map[string]*windowBudget{}}
}

// ErrNoTunnels says a peer gets one connection per stream.
var ErrNoTunnels = errors.New("peer does not offer tunnels")

// Stream opens a stream to peer on a pooled tunnel, dialling one when
// there is none. Only a tunnel whose certificate names peer's cluster and
// region carries it: tunnels are kept per Peer, and a dial that finds
// another identity at the address fails with a *MismatchError. When the
// peer turns out not to offer tunnels the connection dialled for the
// tunnel is returned as the stream's own connection (direct): it used t's
// SNI and the flow ALPN. With ErrNoTunnels the caller dials a connection
// for the stream itself (Dial).
func (p *Pool) Stream(ctx context.Context, peer Peer, t wire.Target) (s net.Conn, direct *tls.Conn, err error) {
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			return nil, nil, errors.New("gateway is shutting down")
		}
		pe := p.peers[peer]
		if pe == nil {
			pe = &tunnelPeer{window: p.newBudget("outbound", peer.Cluster)}
			p.peers[peer] = pe
		}
		if p.now().Before(pe.noTunnels) {
			p.mu.Unlock()
			return nil, nil, ErrNoTunnels
		}
		best := pe.pick()
		if best != nil {
			if len(pe.tunnels) < p.cfg.PerPeer && pe.dialing == nil {
				p.startDial(pe, peer, t, nil, nil)
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
				return nil, nil, fmt.Errorf("wait for tunnel to %s: %w", peer.Addr, ctx.Err())
			}
		}
		var res dialResult
		p.startDial(pe, peer, t, ctx, &res)
		ch := pe.dialing
		p.mu.Unlock()
		<-ch
		if res.err != nil || res.direct != nil {
			return nil, res.direct, res.err
		}
		if attempt >= 2 {
			return nil, nil, ErrDead
		}
	}
}

// dialResult is what a dial started for a waiting stream found.
type dialResult struct {
	direct *tls.Conn
	err    error
}

// startDial dials a tunnel to peer. With ctx (a stream waits) it runs
// under ctx and reports to res; without, it runs in the background. Either
// way the connect timeout bounds it. p.mu is held.
func (p *Pool) startDial(pe *tunnelPeer, peer Peer, t wire.Target, ctx context.Context, res *dialResult) {
	ch := make(chan struct{})
	pe.dialing = ch
	pe.result = res
	background := ctx == nil
	if background {
		ctx = p.ctx
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		dctx, cancel := context.WithTimeout(ctx, p.cfg.Connect)
		defer cancel()
		tun, direct, err := p.dialTunnel(dctx, peer, t, pe)
		p.mu.Lock()
		res := pe.result
		pe.result = nil
		pe.dialing = nil
		if err != nil && !errors.Is(err, context.Canceled) {
			p.markDownLocked(pe, peer, err)
		} else if err == nil {
			pe.down = false
		}
		switch {
		case tun != nil && !p.done:
			pe.tunnels = append(pe.tunnels, tun)
		case tun != nil:
			tun.sess.Close()
		case direct != nil:
			pe.noTunnels = p.now().Add(noTunnelsFor)
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

// dialTunnel opens an mTLS connection to peer offering the tunnel and the
// flow protocols, with t's SNI so that a peer without tunnels can take the
// connection as t's stream.
func (p *Pool) dialTunnel(ctx context.Context, peer Peer, t wire.Target, pe *tunnelPeer) (*tunnel, *tls.Conn, error) {
	sc, err := p.handshake(ctx, peer, t, wire.ALPNTunnel, wire.ALPNFlow)
	if err != nil {
		p.m.Dials.WithLabelValues("failed").Inc()
		return nil, nil, err
	}
	if sc.TLS.ConnectionState().NegotiatedProtocol != wire.ALPNTunnel {
		tc := sc.KeepTLS()
		p.m.Dials.WithLabelValues("no-tunnels").Inc()
		p.log.Info("peer gateway does not offer tunnels: one connection per stream", "addr", peer.Addr, "peer", peer.Cluster, "retry_in", noTunnelsFor)
		return nil, tc, nil
	}
	tun, err := p.newTunnel(sc, peer.Cluster, peer, &pe.path, pe.window)
	if err != nil {
		sc.TLS.NetConn().Close()
		p.m.Dials.WithLabelValues("failed").Inc()
		return nil, nil, err
	}
	p.m.Dials.WithLabelValues("ok").Inc()
	return tun, nil, nil
}

// Dial opens an mTLS connection of its own to peer for one stream to t:
// t's SNI, ALPN strait-flow/1 offered. It is pinned like a tunnel: a
// gateway whose certificate names another cluster or region is refused
// with a *MismatchError and the connection closed.
func (p *Pool) Dial(ctx context.Context, peer Peer, t wire.Target) (*tls.Conn, error) {
	sc, err := p.handshake(ctx, peer, t, wire.ALPNFlow)
	if err != nil {
		return nil, err
	}
	return sc.KeepTLS(), nil
}

// handshake dials peer, completes the mTLS handshake offering protos and
// pins the peer: the certificate must name peer's cluster and region.
// Every outbound connection of the pool goes through here.
func (p *Pool) handshake(ctx context.Context, peer Peer, t wire.Target, protos ...string) (*Secure, error) {
	raw, err := p.dial(ctx, peer.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", peer.Addr, err)
	}
	tcfg := p.id.ClientConfig(t.SNI())
	tcfg.NextProtos = protos
	sc := SecureClient(raw, tcfg)
	tc := sc.TLS
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mTLS handshake with gateway %s: %w", peer.Addr, err)
	}
	if err := peer.verify(p.id, tc.ConnectionState()); err != nil {
		raw.Close() // not one byte more to whoever it is
		var me *MismatchError
		if errors.As(err, &me) && p.cfg.Mismatch != nil {
			p.cfg.Mismatch(me)
		}
		return nil, err
	}
	return sc, nil
}

// markDown records that peer did not answer and starts a probe.
func (p *Pool) markDown(peer Peer, why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pe := p.peers[peer]; pe != nil {
		p.markDownLocked(pe, peer, why)
	}
}

func (p *Pool) markDownLocked(pe *tunnelPeer, peer Peer, why error) {
	if p.done {
		return
	}
	if !pe.down {
		p.log.Info("peer gateway down: tried last until it answers again", "addr", peer.Addr, "peer", peer.Cluster, "err", why)
	}
	pe.down = true
	if pe.probing {
		return
	}
	pe.probing = true
	p.wg.Add(1)
	go p.probe(pe, peer)
}

// probe dials a down peer, backing off from the keepalive interval to
// probeMax, until a dial works (the peer is up again and its tunnel is
// pooled) or the gateway stops.
func (p *Pool) probe(pe *tunnelPeer, peer Peer) {
	defer p.wg.Done()
	backoff := retry.New(p.cfg.Keepalive, probeMax)
	probeTarget := wire.Target{Namespace: "strait", Name: "probe", Port: 1}
	for {
		if !backoff.Wait(p.ctx.Done()) {
			return
		}
		p.mu.Lock()
		if !pe.down || p.done || !p.known(peer) {
			// Up again, or gone from the federation: nothing to wait for.
			pe.probing = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.Connect)
		tun, direct, err := p.dialTunnel(ctx, peer, probeTarget, pe)
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
			pe.noTunnels = p.now().Add(noTunnelsFor)
		}
		p.mu.Unlock()
		p.log.Info("peer gateway answers again", "addr", peer.Addr, "peer", peer.Cluster)
		return
	}
}

// probeMax bounds the wait between two probes of a down peer.
const probeMax = 5 * time.Second

// isDown reports whether peer is down (markDown).
func (p *Pool) isDown(peer Peer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pe := p.peers[peer]
	return pe != nil && pe.down
}

// Demote moves the candidates whose gateway is down behind the others,
// keeping both groups' order: it never removes one.
func (p *Pool) Demote(cands []route.Candidate) []route.Candidate {
	var down []route.Candidate
	out := cands[:0:0]
	for _, c := range cands {
		if !c.Local && p.isDown(PeerOf(c)) {
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

// Close closes every outbound tunnel and takes no more; Wait then waits
// for the pool's goroutines, which end with the pool's context.
func (p *Pool) Close() {
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

// Wait waits until every goroutine of the pool has ended: call it after
// Close and after the pool's context has ended.
func (p *Pool) Wait() { p.wg.Wait() }

// Status lists the outbound tunnels by peer address.
func (p *Pool) Status() []admin.TunnelStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []admin.TunnelStatus{}
	now := p.now()
	for key, pe := range p.peers {
		addr := key.Addr
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

// Serve serves the streams of a tunnel that peer (a cluster) opened on
// tc, until the tunnel ends. Each stream goes to admit in the accept loop:
// false means admit answered and closed it; otherwise handle serves it in
// a goroutine of its own, and Serve returns only once every handle has.
// When draining closes, it tells the peer to open no more streams, lets
// the open ones finish (at most Config.Drain) and then closes.
//
// A peer has at most Config.MaxStreamsPerPeer streams open over all the
// tunnels it opened here (the multiplexer's count: a stream half-closed
// by the peer still counts, one this gateway closed does not, as the
// multiplexer forgets it and drops what still arrives for it). A stream
// over the cap is answered ERR and closed, so that the peer sends the flow
// elsewhere, before admit sees it. Each stream buffers at most its window
// that the gateway has not yet passed on, so what one peer can pin here
// is bounded by MaxStreamsPerPeer × StreamWindowKiB + PeerWindowMiB
// (window.go).
func (p *Pool) Serve(sc *Secure, peer string, draining <-chan struct{}, admit func(*Stream) bool, handle func(*Stream)) {
	p.mu.Lock()
	budget := p.windows[peer]
	if budget == nil {
		budget = p.newBudget("inbound", peer)
		p.windows[peer] = budget
	}
	p.mu.Unlock()
	tun, err := p.newTunnel(sc, peer, Peer{}, nil, budget)
	if err != nil {
		p.log.Warn("inbound tunnel", "peer", peer, "err", err)
		return
	}
	p.mu.Lock()
	p.inbound[peer] = append(p.inbound[peer], tun)
	p.mu.Unlock()
	defer p.forgetInbound(peer, tun)
	var streams sync.WaitGroup
	defer streams.Wait()
	stopDrain := make(chan struct{})
	defer close(stopDrain)
	go func() {
		select {
		case <-stopDrain:
			return
		case <-draining:
		}
		// No new streams; the peer may have opened some before it heard.
		// Those arrive within a round trip and are answered ERR, which the
		// peer retries elsewhere. Closing before could break them midway.
		tun.draining.Store(true)
		tun.noticeDrain(p.cfg.Connect)
		grace := min(max(2*time.Duration(tun.rtt.Load())+50*time.Millisecond, 100*time.Millisecond), p.cfg.Drain)
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
		s := &Stream{Stream: ys, t: tun}
		if tun.draining.Load() {
			s.SetWriteDeadline(time.Now().Add(p.cfg.Connect))
			_ = wire.WriteAnswer(s, errors.New("peer gateway is draining"))
			s.Close()
			continue
		}
		if max := p.cfg.MaxStreamsPerPeer; max > 0 {
			if n := p.peerStreams(peer); n > max {
				p.m.Refused.Inc()
				s.SetWriteDeadline(time.Now().Add(p.cfg.Connect))
				_ = wire.WriteAnswer(s, fmt.Errorf("peer %s has %d streams open here, the limit is %d", peer, n-1, max))
				s.Close()
				continue
			}
		}
		if !admit(s) {
			continue
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			handle(s)
		}()
	}
}

// peerStreams counts the streams peer has open on the tunnels it opened.
func (p *Pool) peerStreams(peer string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.inbound[peer] {
		n += t.sess.NumStreams()
	}
	return n
}

func (p *Pool) forgetInbound(peer string, tun *tunnel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := slices.DeleteFunc(p.inbound[peer], func(t *tunnel) bool { return t == tun })
	if len(ts) == 0 {
		delete(p.inbound, peer)
		return
	}
	p.inbound[peer] = ts
}

// Fresh reports whether the stream's tunnel looks alive right now (see
// tunnel.fresh), for sending a client's first bytes before the answer.
func (s *Stream) Fresh() bool { return s.t.fresh(s.t.ping) }
