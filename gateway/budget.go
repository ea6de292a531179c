package gateway

import (
	"net"

	"github.com/straitmesh/strait/internal/connlimit"
)

// Connection budgets (limits.*, LimitsConfig). Every listener has its own
// budget (limits.listeners.<name>); connections over it are closed as soon
// as they are accepted. The data, Raft and control ports, whose clients
// are not authenticated before their TLS handshake, also close a
// handshake that has not finished within limits.handshakeTimeout and
// refuse more than limits.handshakesPerSource handshakes under way from
// one client address over the three of them. Connections from local
// workloads and streams from other gateways then count against
// limits.maxConnections together (connTracker).

// Reasons of strait_gateway_connections_refused_total beyond connlimit's
// (listener, source).
const (
	refusedMaxConnections = "max_connections" // limits.maxConnections
	refusedPeerStreams    = "peer_streams"    // tunnels.maxStreamsPerPeer
)

// listenIn binds addr and puts the listener in its budget (budget).
func (g *Gateway) listenIn(name, addr string, max int, handshake bool) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if name != "admin" {
		ln = g.faults.Listen(ln) // fault mode: the admin listener alone stays up
	}
	return g.budget(name, ln, max, handshake), nil
}

// budget puts ln in a budget of max open connections, counting refusals
// under name. A listener whose connections start with a TLS handshake
// also gets the handshake deadline and the per-source cap; its handler
// calls connlimit.Established once the handshake finished.
func (g *Gateway) budget(name string, ln net.Listener, max int, handshake bool) net.Listener {
	cfg := connlimit.Config{Max: max, Refused: func(why connlimit.Reason, remote net.Addr) {
		if g.closing.Load() {
			return
		}
		g.metrics.refused.WithLabelValues(name, string(why)).Inc()
		g.log.Debug("connection refused", "listener", name, "reason", why, "peer", remote.String())
	}}
	if handshake {
		if g.sources == nil {
			g.sources = connlimit.NewSources(g.cfg.Limits.HandshakesPerSource)
		}
		cfg.HandshakeTimeout = g.cfg.Limits.HandshakeTimeout
		cfg.Sources = g.sources
		cfg.TimedOut = func(remote net.Addr) {
			g.metrics.handshakeTimeouts.WithLabelValues(name).Inc()
			g.log.Debug("handshake deadline passed", "listener", name, "peer", remote.String())
		}
	}
	return connlimit.NewListener(ln, cfg)
}
