package state

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/straitmesh/strait/internal/retry"
)

// tlsStream is the Raft stream layer: mTLS in both directions with the
// gateway's certificate, so only identities of the federation's trust
// domain exchange Raft traffic.
//
// Inbound connections are handshaken here, each in a goroutine of its own
// and within handshakeTimeout, and only then handed to Raft: Raft gives
// every connection it accepts a 256 KiB read buffer and a goroutine for
// its life, which a client that never finishes its handshake must not
// get. A slow or foreign client never blocks the accept loop.
type tlsStream struct {
	ln               net.Listener
	adv              net.Addr
	server           *tls.Config
	client           *tls.Config
	handshakeTimeout time.Duration
	log              *slog.Logger

	ready chan net.Conn // handshaken connections, to Accept
	done  chan struct{} // closed by Close
	wg    sync.WaitGroup

	mu        sync.Mutex
	pending   map[net.Conn]struct{} // handshakes under way, closed by Close
	acceptErr error                 // why the listener stopped; set before failed closes
	failed    chan struct{}
	closeOnce sync.Once
	// dial opens the TCP connection beneath an outbound mTLS one; nil:
	// a net.Dialer (Options.RaftDial).
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// defaultHandshakeTimeout bounds an inbound Raft handshake when
// Options.HandshakeTimeout is not set.
const defaultHandshakeTimeout = 5 * time.Second

// established is what a listener in a connection budget returns (the
// gateway's, internal/connlimit): told when a handshake finished, it
// stops counting the connection as a handshake of its source.
type established interface{ Established() bool }

func newTLSStream(ln net.Listener, adv net.Addr, server, client *tls.Config, handshakeTimeout time.Duration, log *slog.Logger) *tlsStream {
	if handshakeTimeout <= 0 {
		handshakeTimeout = defaultHandshakeTimeout
	}
	s := &tlsStream{ln: ln, adv: adv, server: server, client: client, handshakeTimeout: handshakeTimeout, log: log,
		ready: make(chan net.Conn), done: make(chan struct{}), failed: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *tlsStream) acceptLoop() {
	defer s.wg.Done()
	backoff := retry.AcceptBackoff()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if backoff.Wait(s.done) {
					continue
				}
			}
			s.mu.Lock()
			s.acceptErr = err
			s.mu.Unlock()
			close(s.failed)
			return
		}
		backoff.Reset()
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.pending[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handshake(c)
	}
}

// handshake runs the server side of c's TLS handshake within
// handshakeTimeout and hands the connection to Accept.
func (s *tlsStream) handshake(c net.Conn) {
	defer s.wg.Done()
	tc := tls.Server(c, s.server)
	tc.SetDeadline(time.Now().Add(s.handshakeTimeout))
	err := tc.Handshake()
	s.mu.Lock()
	delete(s.pending, c)
	s.mu.Unlock()
	if err != nil {
		s.log.Debug("raft handshake failed", "peer", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if e, ok := c.(established); ok {
		e.Established()
	}
	tc.SetDeadline(time.Time{})
	select {
	case s.ready <- tc:
	case <-s.done:
		tc.Close()
	}
}

// Accept returns the next connection whose handshake finished.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	case <-s.failed:
		s.mu.Lock()
		defer s.mu.Unlock()
		return nil, s.acceptErr
	}
}

// Dial opens an mTLS connection to another server's Raft address.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if s.dial == nil {
		d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.client}
		c, err := d.DialContext(ctx, "tcp", string(addr))
		if err != nil {
			return nil, fmt.Errorf("raft dial %s: %w", addr, err)
		}
		return c, nil
	}
	raw, err := s.dial(ctx, string(addr))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", addr, err)
	}
	tc := tls.Client(raw, s.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("raft dial %s: %w", addr, err)
	}
	return tc, nil
}

// Close stops accepting, closes the handshakes under way and waits for
// the stream layer's goroutines.
func (s *tlsStream) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		for c := range s.pending {
			c.Close()
		}
		s.mu.Unlock()
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

func (s *tlsStream) Addr() net.Addr { return s.adv }
