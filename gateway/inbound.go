package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

// serveInbound handles one connection from another gateway: mTLS with a
// federation certificate, SNI names the local service, then bytes flow.
func (g *Gateway) serveInbound(raw net.Conn) {
	defer raw.Close()
	start := time.Now()
	tc := tls.Server(raw, g.serverTLS)
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.Timeouts.Connect)
	defer cancel()
	tc.SetDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	if err := tc.HandshakeContext(ctx); err != nil {
		g.metrics.handshakeFailures.Inc()
		g.log.Debug("inbound handshake failed", "peer", raw.RemoteAddr().String(), "err", err)
		return
	}
	cs := tc.ConnectionState()
	peer, err := identity.PeerID(cs)
	if err != nil {
		g.metrics.handshakeFailures.Inc()
		return
	}
	t, err := ParseSNI(cs.ServerName)
	if err != nil {
		g.refuseInbound(tc, peer, "", err)
		return
	}
	local := g.local.Load()
	svc, ok := local.byKey[t.Namespace+"/"+t.Name]
	if !ok {
		g.refuseInbound(tc, peer, t.String(), fmt.Errorf("cluster %s does not export %s/%s", g.cfg.Cluster, t.Namespace, t.Name))
		return
	}
	addrs, ok := local.endpoints(svc, t.Port)
	if !ok {
		g.refuseInbound(tc, peer, t.String(), fmt.Errorf("service %s/%s has no port %d", t.Namespace, t.Name, t.Port))
		return
	}
	var facts flowFacts
	if cs.NegotiatedProtocol == alpnFlow {
		if facts, err = readFacts(tc); err != nil {
			g.refuseInbound(tc, peer, t.String(), err)
			return
		}
	}
	if err := g.checkInbound(t, svc.Labels, peer, facts); err != nil {
		g.refuseInbound(tc, peer, t.String(), err)
		return
	}
	up, err := g.dialEndpoints(ctx, t, addrs)
	if err != nil {
		g.refuseInbound(tc, peer, t.String(), fmt.Errorf("%s in %s: %w", t, g.cfg.Cluster, err))
		return
	}
	defer up.Close()
	if err := writeStatus(tc, nil); err != nil {
		return
	}
	tc.SetDeadline(time.Time{})
	labels := []string{"inbound", t.String(), peer.Cluster}
	g.metrics.connections.WithLabelValues(append(labels, "ok")...).Inc()
	g.metrics.active.WithLabelValues("inbound").Inc()
	defer g.metrics.active.WithLabelValues("inbound").Dec()
	in, out := splice(tc, up)
	g.metrics.bytes.WithLabelValues("inbound", t.String(), "rx").Add(float64(in))
	g.metrics.bytes.WithLabelValues("inbound", t.String(), "tx").Add(float64(out))
	g.log.Debug("inbound stream done", "service", t.String(), "peer", peer.Cluster, "rx", in, "tx", out, "dur", time.Since(start))
}

func (g *Gateway) refuseInbound(tc *tls.Conn, peer identity.ID, svc string, err error) {
	g.metrics.connections.WithLabelValues("inbound", svc, peer.Cluster, "refused").Inc()
	g.log.Info("inbound stream refused", "peer", peer.Cluster, "service", svc, "err", err)
	if werr := writeStatus(tc, err); werr != nil && !errors.Is(werr, net.ErrClosed) {
		g.log.Debug("write refusal", "err", werr)
	}
}

// checkInbound decides a stream again at the receiving end (defence in
// depth): the source region is the one in the peer's certificate, the
// labels this cluster's own, and the peer's facts can only narrow.
func (g *Gateway) checkInbound(t Target, labels map[string]string, peer identity.ID, facts flowFacts) error {
	eng, version := g.res.current()
	if eng == nil {
		g.res.audit.Refused("inbound", 503)
		return errors.New(residencyPrefix + errNoPolicy.Error())
	}
	self := sovereignty.Candidate{Cluster: g.cfg.Cluster, Region: g.cfg.Region}
	v := decideInbound(eng, self, t, labels, peer, facts)
	g.res.audit.Count(v.decision)
	if v.decision.Allow {
		return nil
	}
	reason := residencyPrefix + v.reason
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
