package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
)

// Impostor is a data-plane listener that is not the gateway the catalog
// lists where it is reached: it holds a valid certificate of the lab's CA
// for another cluster, as a gateway whose key leaked would, and takes
// every stream offered to it (on tunnels and on connections of their
// own), answers OK and serves one HTTP response that names its own
// cluster and region: a flow given to it goes wherever it likes. Point a
// path at it with Lab.Hijack; Carried says whether any gateway gave it a
// stream.
type Impostor struct {
	ID identity.ID

	ln         net.Listener
	pool       *tunnel.Pool
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	handshakes atomic.Int64
	carried    atomic.Int64
}

// StartImpostor listens on a free loopback port with a certificate of
// the lab's CA for cluster in region. Close stops it.
func (l *Lab) StartImpostor(region, cluster string) (*Impostor, error) {
	cert, err := l.CA.Issue(region, cluster, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	id, err := identity.NewBundle(cert, l.CA.Roots())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lab: impostor %s: %w", cluster, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := gateway.DefaultConfig()
	m := tunnel.Metrics{
		Tunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "impostor_tunnels"}, []string{"direction"}),
		Dials:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "impostor_dials"}, []string{"result"}),
		Closed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "impostor_closed"}, []string{"reason"}),
	}
	im := &Impostor{ID: id.ID, ln: ln, cancel: cancel,
		pool: tunnel.NewPool(ctx, tunnel.Config{PerPeer: 1, Keepalive: tc.Tunnels.Keepalive, KeepaliveTimeout: tc.Tunnels.KeepaliveTimeout,
			Connect: time.Second, Drain: time.Second, StreamWindowKiB: tc.Tunnels.StreamWindowKiB,
			MaxStreamWindowKiB: tc.Tunnels.MaxStreamWindowKiB, PeerWindowMiB: tc.Tunnels.PeerWindowMiB}, id, nil, nil, m, slog.New(slog.DiscardHandler), nil)}
	cfg := id.ServerConfig()
	cfg.NextProtos = []string{wire.ALPNTunnel, wire.ALPNFlow}
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			im.wg.Add(1)
			go func() {
				defer im.wg.Done()
				im.serve(ctx, tunnel.SecureServer(c, cfg))
			}()
		}
	}()
	return im, nil
}

// serve takes one mTLS connection: a tunnel's streams, or one stream.
func (im *Impostor) serve(ctx context.Context, sc *tunnel.Secure) {
	tc := sc.TLS
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		tc.Close()
		return
	}
	im.handshakes.Add(1)
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol == wire.ALPNTunnel {
		peer, _ := identity.PeerID(cs)
		im.pool.Serve(sc, peer.Cluster, ctx.Done(), func(*tunnel.Stream) bool { return true }, func(s *tunnel.Stream) {
			defer s.Close()
			t, _, rest, err := wire.ReadStreamHeader(s, make([]byte, wire.MaxStreamHeader))
			if err == nil {
				im.carry(s, io.MultiReader(bytes.NewReader(rest), s), t)
			}
		})
		return
	}
	defer tc.Close()
	t, err := wire.ParseSNI(cs.ServerName)
	if err != nil {
		return
	}
	if cs.NegotiatedProtocol == wire.ALPNFlow {
		if _, err := wire.ReadFacts(tc); err != nil {
			return
		}
	}
	im.carry(tc, tc, t)
}

// carry answers a stream OK and serves it one HTTP response, read from r
// (c, or what was read of c already and then c).
func (im *Impostor) carry(c net.Conn, r io.Reader, t wire.Target) {
	im.carried.Add(1)
	if err := wire.WriteAnswer(c, nil); err != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(r))
	if err != nil {
		return
	}
	io.Copy(io.Discard, req.Body)
	body, _ := json.Marshal(Reply{Service: t.Namespace + "/" + t.Name, Cluster: im.ID.Cluster, Region: im.ID.Region,
		Endpoint: im.Addr(), Method: req.Method, Path: req.URL.Path, Host: req.Host})
	resp := &http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(string(body))), Close: true}
	_ = resp.Write(c)
}

// Addr is where the impostor listens.
func (im *Impostor) Addr() string { return im.ln.Addr().String() }

// Handshakes counts the mTLS handshakes completed with it: the gateways
// that reached it.
func (im *Impostor) Handshakes() int64 { return im.handshakes.Load() }

// Carried counts the streams it was given and answered OK.
func (im *Impostor) Carried() int64 { return im.carried.Load() }

// Close stops listening, closes every connection and waits for them.
func (im *Impostor) Close() {
	im.ln.Close()
	im.pool.Close()
	im.cancel()
	im.wg.Wait()
	im.pool.Wait()
}

// Hijack sends every new data-plane connection from cluster from to the
// gateway of cluster victim to addr instead, as a poisoned resolver or a
// hijacked route would: the catalog still lists victim's gateway at its
// own address. addr "" restores the path. Open connections stay where
// they are.
func (l *Lab) Hijack(from, victim, addr string) error {
	g := l.Gateway(victim)
	if g == nil || l.Gateway(from) == nil {
		return fmt.Errorf("lab: hijack %s->%s: no such cluster", from, victim)
	}
	l.links.hijack(from, g.DataAddr(), addr)
	return nil
}
