package gateway

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/gateway/wire"
)

// maxEarly bounds the client bytes sent to a candidate before it has
// answered. They are kept until the answer: if the candidate refuses, it
// has sent none of them on, and they go to the next candidate.
const maxEarly = 64 << 10

type relayState int

const (
	relayPending   relayState = iota // the current candidate has not answered
	relayConfirmed                   // it answered OK: bytes flow
	relayClosed                      // the flow failed
)

// relay carries one client connection of an L4 entry (an import port,
// SNI passthrough) to its target. It sends the client's first bytes with
// the stream header instead of waiting for the answer, so over a tunnel a
// new connection costs one round trip to its first response byte; the
// bytes are kept for the next candidate until the answer.
type relay struct {
	g      *Gateway
	client net.Conn
	f      *flow

	mu    sync.Mutex
	cond  sync.Cond
	state relayState
	up    net.Conn
	early []byte
	safe  int  // leading bytes of early that may reach a service twice (a ClientHello)
	spec  bool // client bytes may go to up before its answer
	eof   bool // the client half-closed before the answer
}

// relayTarget carries client to t. first holds bytes already read from the
// client, sent ahead of the rest; firstSafe says they may reach a service
// twice (a TLS ClientHello: a second one only starts a second handshake),
// so a stream that breaks with only them sent is retried. It returns an error, and
// has sent nothing to the client, when no candidate took the flow; the
// error is a *route.NoRouteError when the plan or the candidates said no.
func (g *Gateway) relayTarget(client net.Conn, t wire.Target, in route.FlowIn, first []byte, firstSafe bool) error {
	ctx, span := g.flowSpan(g.ctx, t, in)
	err := g.relayFlow(ctx, client, t, in, first, firstSafe)
	spanFailed(span, err)
	span.End()
	return err
}

func (g *Gateway) relayFlow(ctx context.Context, client net.Conn, t wire.Target, in route.FlowIn, first []byte, firstSafe bool) error {
	svc := t.String()
	a, err := g.prepare(ctx, t, in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Budget)
	defer cancel()
	up, c, answered, err := a.open(ctx)
	if err != nil {
		return err
	}
	if answered && len(first) == 0 {
		// A local endpoint: nothing to wait for.
		defer up.Close()
		a.sent(c.Cluster)
		g.carry(client, up, t, a.answered(c))
		return nil
	}
	r := &relay{g: g, client: client, up: up, early: append([]byte(nil), first...), spec: g.speculate(up)}
	if firstSafe {
		r.safe = len(first)
	}
	r.cond.L = &r.mu
	if len(first) > 0 && (r.spec || firstSafe) {
		up.SetWriteDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
		_, _ = up.Write(first) // a failed write shows in the answer
	}
	r.f = newFlow(client, up)
	g.flows.add(r.f)
	defer g.flows.remove(r.f)
	pumped := make(chan int64, 1)
	go func() { pumped <- r.pump() }()
	defer func() {
		r.mu.Lock()
		up := r.up
		r.mu.Unlock()
		up.Close()
	}()

	for !answered {
		err := awaitStatus(ctx, up, g.cfg.Timeouts.Connect)
		if err == nil {
			break
		}
		a.failed(c, err)
		r.mu.Lock()
		if !retrySafe(err) && r.sent() {
			// The stream broke before its answer, after client bytes went
			// out: they may have reached the service, so they are never
			// sent anywhere else.
			r.state = relayClosed
			r.mu.Unlock()
			r.cond.Broadcast()
			client.Close()
			<-pumped
			g.metrics.connections.WithLabelValues("outbound", svc, g.cfg.Cluster, c.Cluster, "broken").Inc()
			g.log.Info("outbound connection broken before its answer", "service", svc, "cluster", c.Cluster, "err", err)
			return nil
		}
		old := r.up
		var next net.Conn
		next, c, answered, err = a.open(ctx)
		if err == nil {
			r.up, up = next, next
			r.spec = g.speculate(next)
			next.SetWriteDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
			if n := r.sendable(); n > 0 {
				_, _ = next.Write(r.early[:n])
			}
			if r.eof && r.spec {
				closeWrite(next)
			}
		} else {
			r.state = relayClosed
		}
		r.mu.Unlock()
		old.Close()
		if err != nil {
			r.cond.Broadcast()
			client.Close()
			<-pumped
			return err
		}
	}
	up.SetWriteDeadline(time.Time{})
	r.mu.Lock()
	if n := r.sendable(); n < len(r.early) {
		// Held back until the answer: send it now.
		if _, err := up.Write(r.early[n:]); err != nil {
			r.state = relayClosed
		}
	}
	if r.eof && r.state != relayClosed && !r.spec {
		closeWrite(up)
	}
	if r.state != relayClosed {
		r.state = relayConfirmed
	}
	r.early = nil
	r.mu.Unlock()
	r.cond.Broadcast()

	rt := a.answered(c)
	a.sent(rt.cluster)
	g.metrics.connections.WithLabelValues("outbound", svc, g.cfg.Cluster, rt.cluster, "ok").Inc()
	g.metrics.active.WithLabelValues("outbound").Inc()
	defer g.metrics.active.WithLabelValues("outbound").Dec()
	rx := r.f.copy(client, up)
	closeWrite(client)
	tx := <-pumped + int64(len(first))
	g.metrics.bytes.WithLabelValues("outbound", svc, g.cfg.Cluster, rt.cluster, "tx").Add(float64(tx))
	g.metrics.bytes.WithLabelValues("outbound", svc, g.cfg.Cluster, rt.cluster, "rx").Add(float64(rx))
	g.metrics.duration.WithLabelValues("outbound", svc, g.cfg.Cluster, rt.cluster).Observe(time.Since(a.start).Seconds())
	return nil
}

// pump copies the client to the current upstream. Before the answer it
// keeps what it sends (up to maxEarly, then it waits for the answer).
// Once the answer came, the flow's copy takes over (a tunnel stream then
// reads the client straight into its frames).
func (r *relay) pump() int64 {
	bp := copyBufs.Get().(*[]byte)
	defer func() {
		if bp != nil {
			copyBufs.Put(bp)
		}
	}()
	buf := *bp
	var n int64
	for {
		if up := r.confirmed(); up != nil {
			copyBufs.Put(bp)
			bp = nil
			n += r.f.copy(up, r.client)
			closeWrite(up)
			return n
		}
		k, rerr := r.client.Read(buf)
		if k > 0 {
			r.f.touch()
			r.mu.Lock()
			for r.state == relayPending && len(r.early)+k > maxEarly {
				r.cond.Wait()
			}
			switch r.state {
			case relayClosed:
				r.mu.Unlock()
				return n
			case relayPending:
				r.early = append(r.early, buf[:k]...)
				if r.spec {
					_, _ = r.up.Write(buf[:k]) // a failed write shows in the answer
				}
				r.mu.Unlock()
			default:
				up := r.up
				r.mu.Unlock()
				if _, err := up.Write(buf[:k]); err != nil {
					up.Close()
					return n
				}
			}
			n += int64(k)
		}
		if rerr != nil {
			r.mu.Lock()
			switch r.state {
			case relayPending:
				r.eof = true
				if r.spec {
					closeWrite(r.up)
				}
			case relayConfirmed:
				closeWrite(r.up)
			}
			r.mu.Unlock()
			return n
		}
	}
}

// confirmed is the upstream once it answered; else nil.
func (r *relay) confirmed() net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != relayConfirmed {
		return nil
	}
	return r.up
}

// sendable is how much of early goes to the current upstream before its
// answer: all of it when speculating, else only the bytes safe to repeat.
// r.mu is held.
func (r *relay) sendable() int {
	if r.spec {
		return len(r.early)
	}
	return r.safe
}

// sent reports whether bytes that must not reach a service twice have
// gone to the current upstream. r.mu is held.
func (r *relay) sent() bool {
	return r.spec && (len(r.early) > r.safe || r.eof)
}

// speculate reports whether client bytes may go to up before it answers:
// when tunnels.earlyData is on and up is a connection of its own (just
// handshaken) or a stream on a tunnel that heard from its peer within the
// last keepalive interval. On a tunnel gone quiet the bytes wait for the
// answer, so that if the peer is cut off they can still go elsewhere.
func (g *Gateway) speculate(up net.Conn) bool {
	if !g.cfg.Tunnels.EarlyData {
		return false
	}
	if s, ok := unwrap(up).(*tunnel.Stream); ok {
		return s.Fresh()
	}
	return true
}

// retrySafe reports whether a stream that failed before its answer with
// err certainly sent nothing on: the peer gateway answered ERR, or its
// multiplexer reset the stream before the gateway accepted it (it was
// draining, or its backlog was full). The gateway itself never resets a
// stream before it has answered.
func retrySafe(err error) bool {
	var refused *wire.Refusal
	return errors.As(err, &refused) || tunnel.PeerReset(err)
}

// outboundFailed counts and logs an outbound flow that found no route.
func (g *Gateway) outboundFailed(svc string, in route.FlowIn, err error) {
	g.metrics.connections.WithLabelValues("outbound", svc, g.cfg.Cluster, "", "failed").Inc()
	g.log.Info("outbound connection failed", "service", svc, "entry", in.Entry, "err", err)
}
