package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/straitmesh/strait/gateway/fault"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/connlimit"
	"github.com/straitmesh/strait/sovereignty"
)

// serveInbound handles one connection from another gateway: mTLS with a
// federation certificate, then either a tunnel (many streams) or a single
// stream whose target is the SNI.
func (g *Gateway) serveInbound(raw net.Conn) {
	defer raw.Close()
	sc := tunnel.SecureServer(raw, g.serverTLS)
	tc := sc.TLS
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.Timeouts.Connect)
	defer cancel()
	tc.SetDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	if err := tc.HandshakeContext(ctx); err != nil {
		g.metrics.handshakeFailures.Inc()
		g.log.Debug("inbound handshake failed", "peer", raw.RemoteAddr().String(), "err", err)
		return
	}
	connlimit.Established(raw)
	cs := tc.ConnectionState()
	peer, err := g.id.PeerID(cs)
	if err != nil || !peer.IsGateway() {
		// Only gateways carry traffic: an operator's certificate opens no
		// stream.
		g.metrics.handshakeFailures.Inc()
		return
	}
	fault.SetPeer(raw, peer.Cluster) // fault mode: the rules for this verified peer apply from here
	if cs.NegotiatedProtocol == wire.ALPNTunnel {
		tc.SetDeadline(time.Time{})
		drain, stop := g.tunnelDrain()
		defer stop()
		g.tunnels.Serve(sc, peer.Cluster, drain, g.admitTunnelStream, func(s *tunnel.Stream) {
			defer g.conns.done(s)
			g.serveTunnelStream(s, peer)
		})
		return
	}
	tc = sc.KeepTLS()
	t, err := wire.ParseSNI(cs.ServerName)
	if err != nil {
		g.refuseInbound(tc, peer, "", err)
		return
	}
	if !g.conns.count(raw) {
		g.metrics.refused.WithLabelValues("data", refusedMaxConnections).Inc()
		g.refuseInbound(tc, peer, t.String(), g.atLimit())
		return
	}
	var facts wire.Facts
	if cs.NegotiatedProtocol == wire.ALPNFlow {
		if facts, err = wire.ReadFacts(tc); err != nil {
			g.refuseInbound(tc, peer, t.String(), err)
			return
		}
	}
	tc.SetDeadline(time.Time{})
	g.serveStream(tc, peer, t, facts, nil)
}

// serveStream carries one stream from a peer gateway to a local endpoint
// of t: it checks the service and the residency policy, dials an
// endpoint, splices and answers OK (answerWithFirst). ahead is what was
// read of the stream beyond its header; it and the rest of the stream
// reach the endpoint only once it took the connection, so a refused
// stream never reaches a service.
func (g *Gateway) serveStream(s net.Conn, peer identity.ID, t wire.Target, facts wire.Facts, ahead []byte) {
	start := time.Now()
	span := g.inboundSpan(peer, t, facts)
	defer span.End()
	refuse := func(err error) {
		inboundRefused(span, err)
		g.refuseInbound(s, peer, t.String(), err)
	}
	local := g.local.Load()
	svc, ok := local.byKey[t.Namespace+"/"+t.Name]
	if !ok {
		refuse(fmt.Errorf("cluster %s does not export %s/%s", g.cfg.Cluster, t.Namespace, t.Name))
		return
	}
	addrs, ok := local.endpoints(svc, t.Port)
	if !ok {
		refuse(fmt.Errorf("service %s/%s has no port %d", t.Namespace, t.Name, t.Port))
		return
	}
	if err := g.checkAccess(t, peer); err != nil {
		refuse(err)
		return
	}
	if err := g.checkInbound(local, t, svc.Labels, peer, facts); err != nil {
		refuse(err)
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.Timeouts.Connect)
	up, err := g.dialEndpoints(ctx, t, addrs)
	cancel()
	if err != nil {
		refuse(fmt.Errorf("%s in %s: %w", t, g.cfg.Cluster, err))
		return
	}
	defer up.Close()
	svcName := t.String()
	wait := answerWaitFor(s, ahead)
	answer := func(f *flow) (int64, bool) { return answerWithFirst(f, s, up, wait, g.cfg.Timeouts.Connect) }
	tx, rx := g.meteredSplice("inbound", svcName, peer.Cluster, start, s, up, ahead, answer)
	g.log.Debug("inbound stream done", "service", svcName, "peer", peer.Cluster, "tx", tx, "rx", rx, "dur", time.Since(start))
}

// answerWait is how long an accepted stream's OK waits for the
// service's first bytes, to go out with them.
const answerWait = time.Millisecond

// answerWaitFor is how long the answer on s waits for the service's
// first bytes (answerWithFirst): answerWait when bytes of the peer's are
// on their way to the service, read with the header (ahead) or received
// on the stream since, else none. A peer that holds its client's bytes
// until the answer (tunnels.earlyData off, a tunnel gone quiet) would
// only wait longer for it. On a connection of its own, where what the
// peer sent after its facts cannot be seen, the answer waits.
func answerWaitFor(s net.Conn, ahead []byte) time.Duration {
	if b, ok := unwrap(s).(interface{ Buffered() int }); ok && len(ahead) == 0 && b.Buffered() == 0 {
		return 0
	}
	return answerWait
}

// answerWithFirst answers OK on s, the stream up was dialled for, once
// the peer's bytes already flow to up (splice's other direction): with
// up's first bytes when they come within wait, so that answer and
// response reach the peer in one frame and wake it once, else alone (up
// ended, failed or is quiet: the copy that follows finds out). It
// returns the bytes of up sent and whether the stream may go on.
func answerWithFirst(f *flow, s, up net.Conn, wait, timeout time.Duration) (int64, bool) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := append((*bp)[:0], "OK\n"...)
	n := 0
	if wait > 0 {
		up.SetReadDeadline(time.Now().Add(wait))
		n, _ = up.Read(buf[len(buf):cap(buf)])
		up.SetReadDeadline(time.Time{})
	}
	if n > 0 {
		f.touch()
	}
	s.SetWriteDeadline(time.Now().Add(timeout))
	_, err := s.Write(buf[:len(buf)+n])
	s.SetWriteDeadline(time.Time{})
	return int64(n), err == nil
}

func (g *Gateway) refuseInbound(s net.Conn, peer identity.ID, svc string, err error) {
	g.metrics.connections.WithLabelValues("inbound", svc, peer.Cluster, g.cfg.Cluster, "refused").Inc()
	g.log.Info("inbound stream refused", "peer", peer.Cluster, "service", svc, "err", err)
	s.SetWriteDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	if werr := wire.WriteAnswer(s, err); werr != nil && !errors.Is(werr, net.ErrClosed) {
		g.log.Debug("write refusal", "err", werr)
	}
}

// checkAccess applies the routing state's export and import records to a
// stream from peer: this cluster must be one that may export t's service
// on t's port, and the peer's cluster, by its verified certificate, one
// that may import it. A refusal is counted and audited (kind access).
func (g *Gateway) checkAccess(t wire.Target, peer identity.ID) error {
	var reason string
	switch {
	case !g.access.MayExport(t.Namespace, t.Name, g.cfg.Cluster, t.Port):
		reason = fmt.Sprintf("access: the routing state's export record for %s/%s (port %d) does not name cluster %s", t.Namespace, t.Name, t.Port, g.cfg.Cluster)
	case !g.access.MayImport(t.Namespace, t.Name, peer.Cluster):
		reason = fmt.Sprintf("access: the routing state's import record for %s/%s does not name cluster %s", t.Namespace, t.Name, peer.Cluster)
	default:
		return nil
	}
	g.metrics.accessRefused.WithLabelValues("inbound", t.String()).Inc()
	eng, version := g.res.current()
	g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindAccess, Decision: sovereignty.DecisionDeny, Direction: "inbound", Entry: "inbound",
		Flow:   &sovereignty.FlowInfo{Service: t.Namespace + "/" + t.Name, Port: t.Port, SourceCluster: peer.Cluster, SourceRegion: peer.Region},
		Status: 403, Reason: reason, Policy: g.res.info(eng, version)})
	return errors.New(reason)
}

// checkInbound decides a stream again at the receiving end (defence in
// depth): the source region is the one in the peer's certificate, the
// labels this cluster's own, and the peer's facts can only narrow.
func (g *Gateway) checkInbound(local *localTable, t wire.Target, labels map[string]string, peer identity.ID, facts wire.Facts) error {
	eng, version := g.res.current()
	if eng == nil {
		g.res.audit.Refused("inbound", 503)
		return errors.New(wire.ResidencyPrefix + errNoPolicy.Error())
	}
	self := sovereignty.Candidate{Cluster: g.cfg.Cluster, Region: g.cfg.Region}
	v := decideInbound(eng, self, t, labels, g.classes.inbound(eng, local, t, labels), peer, facts)
	g.res.audit.Count(v.decision)
	if v.decision.Allow {
		return nil
	}
	reason := wire.ResidencyPrefix + v.reason
	g.res.audit.Refused("inbound", 403)
	fi := &sovereignty.FlowInfo{Service: t.Namespace + "/" + t.Name, Port: t.Port, Protocol: "tcp", SourceCluster: peer.Cluster,
		SourceRegion: peer.Region, SourceNamespace: facts.Namespace, Classes: v.classes}
	if len(facts.Headers) > 0 {
		fi.Protocol = "http"
		fi.Headers = map[string]string{}
		for k, vs := range facts.Header() {
			fi.Headers[k] = vs[0]
		}
	}
	g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionDeny, Direction: "inbound", Entry: "inbound",
		Flow: fi, Status: 403, Rule: v.decision.Rule.ID, RuleAt: v.decision.Rule.Path + " at " + v.decision.Rule.At, Class: v.decision.Rule.Class,
		Reason: reason, Candidates: []sovereignty.CandidateInfo{{Cluster: g.cfg.Cluster, Region: g.cfg.Region, Decision: "deny", Rule: v.decision.Rule.ID}},
		Policy: g.res.info(eng, version)})
	return errors.New(reason)
}

// admitTunnelStream counts a stream a peer opened against
// limits.maxConnections; over the limit it is answered like any refusal,
// so that the peer sends the flow elsewhere.
func (g *Gateway) admitTunnelStream(s *tunnel.Stream) bool {
	if g.conns.add(s, true) {
		return true
	}
	g.metrics.refused.WithLabelValues("tunnel", refusedMaxConnections).Inc()
	s.SetWriteDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	_ = wire.WriteAnswer(s, g.atLimit())
	s.Close()
	return false
}

// atLimit is the refusal of a stream over limits.maxConnections.
func (g *Gateway) atLimit() error {
	return fmt.Errorf("gateway of %s is at its connection limit (%d)", g.cfg.Cluster, g.cfg.Limits.MaxConnections)
}

// knownGateway reports whether the catalog still lists peer: its cluster
// and region at its address.
func (g *Gateway) knownGateway(peer tunnel.Peer) bool {
	if g.catalog == nil {
		return true
	}
	for _, c := range g.catalog.Snapshot().Clusters {
		if c.Gateway == peer.Addr && c.Cluster == peer.Cluster && c.Region == peer.Region {
			return true
		}
	}
	return false
}

// serveTunnelStream reads a stream's header and serves it like a
// connection of its own.
func (g *Gateway) serveTunnelStream(s *tunnel.Stream, peer identity.ID) {
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	bp := headerBufs.Get().(*[wire.MaxStreamHeader]byte)
	t, facts, rest, err := wire.ReadStreamHeader(s, bp[:])
	var ahead []byte
	if len(rest) > 0 {
		ahead = append(ahead, rest...) // the buffer goes back before the stream ends
	}
	headerBufs.Put(bp)
	if err != nil {
		g.refuseInbound(s, peer, "", err)
		return
	}
	s.SetReadDeadline(time.Time{})
	g.serveStream(s, peer, t, facts, ahead)
}

// headerBufs hold stream headers as they are read.
var headerBufs = sync.Pool{New: func() any { return new([wire.MaxStreamHeader]byte) }}
