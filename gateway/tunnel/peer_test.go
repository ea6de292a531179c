package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/metricstest"
)

func testMetrics(reg prometheus.Registerer) Metrics {
	m := Metrics{
		Tunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tunnels"}, []string{"direction"}),
		Dials:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dials"}, []string{"result"}),
		Closed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "closed"}, []string{"reason"}),
	}
	reg.MustRegister(m.Tunnels, m.Dials, m.Closed)
	return m
}

func bundle(t *testing.T, ca *identity.CA, region, cluster string) *identity.Bundle {
	t.Helper()
	cert, err := ca.Issue(region, cluster, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := identity.NewBundle(cert, ca.Roots())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gatewayStub is a data-plane listener on loopback holding id's
// certificate: it serves tunnels with a Pool and counts the streams and
// per-stream connections it was given, answering each OK.
type gatewayStub struct {
	ln      net.Listener
	pool    *Pool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	streams atomic.Int64
}

func startStub(t *testing.T, id *identity.Bundle) *gatewayStub {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &gatewayStub{ln: ln, cancel: cancel,
		pool: NewPool(ctx, Config{PerPeer: 1, Keepalive: time.Hour, KeepaliveTimeout: time.Hour, Connect: time.Second, Drain: time.Second, StreamWindowKiB: 256},
			id, nil, nil, testMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler), nil)}
	cfg := id.ServerConfig()
	cfg.NextProtos = []string{wire.ALPNTunnel, wire.ALPNFlow}
	answer := func(c net.Conn) {
		defer c.Close()
		if _, _, _, err := wire.ReadStreamHeader(c, make([]byte, wire.MaxStreamHeader)); err != nil {
			return
		}
		s.streams.Add(1)
		_ = wire.WriteAnswer(c, nil)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				sc := SecureServer(c, cfg)
				tc := sc.TLS
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return
				}
				peer, _ := identity.PeerID(tc.ConnectionState())
				if tc.ConnectionState().NegotiatedProtocol != wire.ALPNTunnel {
					// One stream: the SNI names the target, the facts follow.
					defer tc.Close()
					if _, err := wire.ReadFacts(tc); err == nil {
						s.streams.Add(1)
						_ = wire.WriteAnswer(tc, nil)
					}
					return
				}
				s.pool.Serve(sc, peer.Cluster, ctx.Done(), func(*Stream) bool { return true }, func(st *Stream) { answer(st) })
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.pool.Close()
		cancel()
		s.wg.Wait()
		s.pool.Wait()
	})
	return s
}

func (s *gatewayStub) addr() string { return s.ln.Addr().String() }

// TestPoolPinsPeers: a gateway holding a valid certificate of the
// federation for another cluster, at the address the catalog lists for
// eu-west-1, never gets a stream for eu-west-1, on a tunnel or on a
// connection of its own: the pool closes the connection after the
// handshake and fails with a *MismatchError, told to Config.Mismatch.
// The same address asked for the cluster its certificate does name works,
// and that tunnel is never used for eu-west-1.
func TestPoolPinsPeers(t *testing.T) {
	ca, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	impostor := startStub(t, bundle(t, ca, "us-east", "us-east-1"))
	honest := startStub(t, bundle(t, ca, "eu-west", "eu-west-2"))

	var mu sync.Mutex
	var refused []*MismatchError
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	var d net.Dialer
	p := NewPool(ctx, Config{PerPeer: 1, Keepalive: time.Hour, KeepaliveTimeout: time.Hour, Connect: 2 * time.Second, Drain: time.Second, StreamWindowKiB: 256,
		Mismatch: func(e *MismatchError) {
			mu.Lock()
			refused = append(refused, e)
			mu.Unlock()
		}},
		bundle(t, ca, "eu-central", "eu-central-1"), func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		nil, testMetrics(reg), slog.New(slog.DiscardHandler), nil)
	defer func() {
		p.Close()
		cancel()
		p.Wait()
	}()
	target := wire.Target{Namespace: "demo", Name: "ledger", Port: 8080}
	listed := Peer{Addr: impostor.addr(), Cluster: "eu-west-1", Region: "eu-west"}

	open := func(peer Peer) error {
		s, direct, err := p.Stream(ctx, peer, target)
		if err != nil {
			return err
		}
		if direct != nil {
			direct.Close()
			return errors.New("got a connection of its own, want a tunnel stream")
		}
		defer s.Close()
		if _, err := s.Write(wire.EncodeStreamHeader(target, []byte("{}\n"))); err != nil {
			return err
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		return wire.ReadAnswer(s)
	}
	wantMismatch := func(what string, err error, cluster, region string) {
		t.Helper()
		var me *MismatchError
		if !errors.As(err, &me) || me.Got.Cluster != "us-east-1" || me.Got.Region != "us-east" || me.Peer.Cluster != cluster || me.Peer.Region != region {
			t.Fatalf("%s: %v, want a MismatchError naming us-east-1", what, err)
		}
		want := "gateway at " + impostor.addr() + " presented spiffe://strait.local/gateway/region/us-east/cluster/us-east-1, expected cluster " + cluster + " in region " + region
		if err.Error() != want {
			t.Errorf("%s: %q\nwant %q", what, err, want)
		}
	}

	wantMismatch("tunnel to eu-west-1", open(listed), "eu-west-1", "eu-west")
	mu.Lock()
	if len(refused) != 1 || refused[0].Peer != listed {
		t.Errorf("Mismatch heard %v, want the one refused dial", refused)
	}
	mu.Unlock()
	if n := metricstest.Sum(t, reg, "dials", map[string]string{"result": "failed"}); n != 1 {
		t.Errorf("failed dials %v, want 1", n)
	}
	// A region alone differing is a mismatch too.
	wantMismatch("tunnel to us-east-1 in another region", open(Peer{Addr: impostor.addr(), Cluster: "us-east-1", Region: "eu-west"}), "us-east-1", "eu-west")

	// The peer is down now: tried after every other candidate.
	cands := p.Demote([]route.Candidate{{Cluster: "eu-west-1", Region: "eu-west", Addr: impostor.addr()}, {Cluster: "eu-west-2", Region: "eu-west", Addr: honest.addr()}})
	if cands[0].Cluster != "eu-west-2" {
		t.Errorf("Demote kept the impostor's address first: %+v", cands)
	}

	// The same address asked for the cluster its certificate names: a
	// tunnel of its own, which eu-west-1's streams never take.
	if err := open(Peer{Addr: impostor.addr(), Cluster: "us-east-1", Region: "us-east"}); err != nil {
		t.Fatalf("stream to us-east-1 where it is: %v", err)
	}
	wantMismatch("tunnel to eu-west-1 with a us-east-1 tunnel open to the address", open(listed), "eu-west-1", "eu-west")
	// A connection of its own is pinned the same way.
	c, err := p.Dial(ctx, listed, target)
	if c != nil {
		c.Close()
	}
	wantMismatch("connection of its own", err, "eu-west-1", "eu-west")
	if n := impostor.streams.Load(); n != 1 {
		t.Errorf("the impostor answered %d streams, want only the one for us-east-1", n)
	}

	// The honest gateway is used as before, on a tunnel and on a
	// connection of its own.
	if err := open(Peer{Addr: honest.addr(), Cluster: "eu-west-2", Region: "eu-west"}); err != nil {
		t.Fatalf("stream to the honest gateway: %v", err)
	}
	c, err = p.Dial(ctx, Peer{Addr: honest.addr(), Cluster: "eu-west-2", Region: "eu-west"}, target)
	if err != nil {
		t.Fatalf("connection to the honest gateway: %v", err)
	}
	if _, err := c.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := wire.ReadAnswer(c); err != nil {
		t.Fatalf("answer on a connection of its own: %v", err)
	}
	c.Close()
	if n := honest.streams.Load(); n != 2 {
		t.Errorf("the honest gateway answered %d streams, want 2", n)
	}

	// Status shows the us-east-1 tunnel as us-east-1's, at that address.
	found := false
	for _, ts := range p.Status() {
		if ts.Addr == impostor.addr() && ts.State == "open" {
			found = true
			if ts.Peer != "us-east-1" {
				t.Errorf("tunnel at the impostor's address listed as %q's", ts.Peer)
			}
		}
	}
	if !found {
		t.Errorf("no open tunnel listed at %s: %+v", impostor.addr(), p.Status())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refused) < 4 {
		t.Errorf("Mismatch heard %d refusals, want every one (4)", len(refused))
	}
}
