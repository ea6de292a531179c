package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
)

// Why the passthrough listener closed a connection without carrying it:
// the reason label of strait_gateway_passthrough_refused_total.
const (
	passRefusedHello       = "client_hello"    // no TLS ClientHello in time, or a malformed one
	passRefusedSNI         = "sni"             // no server name, or not of the form outbound_.<port>_._.<host>
	passRefusedUnknown     = "unknown_service" // no cluster exports the service
	passRefusedResidency   = "residency"       // the residency policy allows no cluster that can take it
	passRefusedUnavailable = "unavailable"     // no allowed candidate answered
)

// listenPassthrough binds listen.passthrough when it is set.
func (g *Gateway) listenPassthrough() error {
	if g.cfg.Listen.Passthrough == "" {
		return nil
	}
	ln, err := g.listenIn("passthrough", g.cfg.Listen.Passthrough, g.cfg.Limits.Listeners.Passthrough, false)
	if err != nil {
		return fmt.Errorf("listen passthrough on %s: %w", g.cfg.Listen.Passthrough, err)
	}
	g.passthroughLn = ln
	return nil
}

// servePassthroughListener accepts on the passthrough listener, if bound.
func (g *Gateway) servePassthroughListener() {
	if g.passthroughLn != nil {
		g.goServe("passthrough", func() error { return g.acceptLoop("passthrough", g.passthroughLn, g.servePassthrough) })
	}
}

// PassthroughAddr returns the bound passthrough address, or "" when disabled.
func (g *Gateway) PassthroughAddr() string {
	if g.passthroughLn == nil {
		return ""
	}
	return g.passthroughLn.Addr().String()
}

// servePassthrough handles one local workload connection on the
// passthrough port: TLS that the gateway does not terminate. It reads the
// ClientHello, routes by its server name (Istio's
// outbound_.<port>_._.<name>.<ns>.svc.cluster.local), then replays the
// ClientHello upstream and carries the rest both ways. The workload's TLS
// session runs end to end with the service in the chosen cluster. The
// gateway never writes to the client before the upstream answers: a
// connection it cannot carry is closed without a byte or TLS alert.
func (g *Gateway) servePassthrough(c net.Conn) {
	defer c.Close()
	peer := c.RemoteAddr().String()
	c.SetReadDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	hello, err := wire.ReadClientHello(c)
	if err != nil {
		g.refusePassthrough(peer, "", passRefusedHello, err)
		return
	}
	if hello.ServerName == "" {
		g.refusePassthrough(peer, "", passRefusedSNI, fmt.Errorf("%w: the ClientHello carries no server name (SNI)", wire.ErrBadName))
		return
	}
	t, err := wire.ParseMeshSNI(hello.ServerName)
	if err != nil {
		g.refusePassthrough(peer, "", passRefusedSNI, err)
		return
	}
	c.SetReadDeadline(time.Time{})
	// The ClientHello goes with the stream header, and to the next
	// candidate if the first refuses.
	if err := g.relayTarget(c, t, route.FlowIn{Entry: "passthrough", Unreadable: true}, hello.Raw, true); err != nil {
		g.metrics.connections.WithLabelValues("outbound", t.String(), g.cfg.Cluster, "", "failed").Inc()
		g.refusePassthrough(peer, t.String(), passRefusal(err), err)
	}
}

// passRefusal names the reason label of a connectTarget failure.
func passRefusal(err error) string {
	var nre *route.NoRouteError
	switch {
	case !errors.As(err, &nre):
		return passRefusedUnavailable
	case !nre.Known:
		return passRefusedUnknown
	case nre.Residency != "":
		return passRefusedResidency
	}
	return passRefusedUnavailable
}

// refusePassthrough counts and logs a connection closed without being
// carried. A client that left before sending anything is only a debug
// line (port probes do that).
func (g *Gateway) refusePassthrough(peer, service, reason string, err error) {
	g.metrics.passthroughRefused.WithLabelValues(reason).Inc()
	level := g.log.Info
	if reason == passRefusedHello && errors.Is(err, io.EOF) {
		level = g.log.Debug
	}
	level("passthrough connection closed", "peer", peer, "service", service, "reason", reason, "err", err)
}
