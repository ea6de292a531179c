package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
)

// servedTunnel is an inbound tunnel served by a pool with the given
// per-peer cap, and the peer's end of it: a yamux client on mTLS over
// loopback. Admitted streams are held until their peer closes them.
type servedTunnel struct {
	pool     *Pool
	m        Metrics
	peer     *yamux.Session
	admitted atomic.Int64
	served   chan struct{} // closed when Serve returned
}

func serveTunnel(t *testing.T, maxPerPeer int) *servedTunnel {
	t.Helper()
	ca, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle := func(cluster string) *identity.Bundle {
		cert, err := ca.Issue("r", cluster, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b, err := identity.NewBundle(cert, ca.Roots())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	self, other := bundle("self"), bundle("other")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st := &servedTunnel{served: make(chan struct{}), m: Metrics{
		Tunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "t"}, []string{"direction"}),
		Dials:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "d"}, []string{"result"}),
		Closed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"reason"}),
		Refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	st.pool = NewPool(ctx, Config{PerPeer: 1, Keepalive: time.Hour, KeepaliveTimeout: time.Hour, Connect: time.Second, Drain: time.Second,
		StreamWindowKiB: 256, MaxStreamsPerPeer: maxPerPeer}, self, nil, nil, st.m, slog.New(slog.DiscardHandler), nil)
	var handlers sync.WaitGroup
	go func() {
		defer close(st.served)
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		sc := SecureServer(raw, self.ServerConfig())
		if sc.TLS.Handshake() != nil {
			return
		}
		st.pool.Serve(sc, "other", make(chan struct{}), func(*Stream) bool {
			st.admitted.Add(1)
			return true
		}, func(s *Stream) {
			handlers.Add(1)
			defer handlers.Done()
			defer s.Close()
			io.Copy(io.Discard, s)
		})
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, other.ClientConfig("x"))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	if st.peer, err = yamux.Client(tc, cfg, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.peer.Close()
		<-st.served
		cancel()
		st.pool.Close()
		st.pool.Wait()
		handlers.Wait()
	})
	return st
}

// open opens a stream and says whether the pool refused it (answered
// ERR) within a short while; an admitted stream gets no answer.
func (st *servedTunnel) open(t *testing.T) (*yamux.Stream, bool) {
	t.Helper()
	s, err := st.peer.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("x")) // the open reaches the pool with the first frame
	s.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	err = wire.ReadAnswer(s)
	s.SetReadDeadline(time.Time{})
	return s, err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, yamux.ErrTimeout)
}

// TestMaxStreamsPerPeer checks the per-peer cap on inbound streams: over
// it a stream is answered ERR and never admitted; a stream the peer
// closes makes room again; refused streams the peer keeps open count for
// nothing.
func TestMaxStreamsPerPeer(t *testing.T) {
	const max = 4
	st := serveTunnel(t, max)
	var held []*yamux.Stream
	for i := range max {
		s, refused := st.open(t)
		if refused {
			t.Fatalf("stream %d refused under the cap", i)
		}
		held = append(held, s)
	}
	s, refused := st.open(t)
	if !refused {
		t.Fatal("a stream over the cap was not refused")
	}
	s.Close()
	if got := testutil.ToFloat64(st.m.Refused); got != 1 || st.admitted.Load() != max {
		t.Fatalf("refused %v, admitted %d; want 1 and %d", got, st.admitted.Load(), max)
	}

	// Closing a held stream makes room (once both sides closed it).
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for st.pool.peerStreams("other") > max-1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still counted after one closed", st.pool.peerStreams("other"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s, refused := st.open(t); refused {
		t.Fatal("a stream was refused after another closed")
	} else {
		defer s.Close()
	}

	// Refused streams the peer keeps open pin nothing here: the gateway
	// closed them, so they do not count, and the cap keeps holding.
	var kept []*yamux.Stream
	for i := range 3 * max {
		s, refused := st.open(t)
		if !refused {
			t.Fatalf("stream %d over the cap admitted", i)
		}
		kept = append(kept, s) // never closed on this side
		// The gateway closes a refused stream right after its answer.
		deadline := time.Now().Add(5 * time.Second)
		for st.pool.peerStreams("other") > max {
			if time.Now().After(deadline) {
				t.Fatalf("%d streams counted with %d refused ones held by the peer, cap %d", st.pool.peerStreams("other"), len(kept), max)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if st.admitted.Load() != max+1 {
		t.Fatalf("admitted %d streams, want %d", st.admitted.Load(), max+1)
	}
}
