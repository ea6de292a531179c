package tunnel

import (
	"crypto/x509"
)

// Recheck verifies again the certificate every open tunnel's peer
// presented, outbound and inbound, and closes at once each tunnel check
// refuses, with its streams: a gateway whose certificate was revoked
// loses its tunnels within one routing-state change, not at its next
// handshake. check is given the peer's chain (leaf first) and whether
// the peer opened the tunnel (it presented a client certificate). A
// closed tunnel counts in strait_gateway_tunnels_closed_total with
// reason; an outbound peer is dialled anew by the next stream, and that
// handshake decides. Recheck returns the tunnels it closed and why, by
// the cluster the peer's certificate names.
func (p *Pool) Recheck(reason string, check func(chain []*x509.Certificate, inbound bool) error) map[string]error {
	type victim struct {
		t   *tunnel
		err error
	}
	var victims []victim
	p.mu.Lock()
	for _, pe := range p.peers {
		for _, t := range pe.tunnels {
			if err := check(t.chain, false); err != nil {
				victims = append(victims, victim{t, err})
			}
		}
	}
	for _, ts := range p.inbound {
		for _, t := range ts {
			if err := check(t.chain, true); err != nil {
				victims = append(victims, victim{t, err})
			}
		}
	}
	p.mu.Unlock()
	closed := map[string]error{}
	for _, v := range victims {
		why := reason
		v.t.why.Store(&why)
		v.t.dead.Store(true)
		// As the keepalive does: the socket first, so that nothing more
		// reaches the peer and no close_notify waits on it.
		v.t.closeSocket()
		v.t.sess.Close()
		closed[v.t.peer] = v.err
	}
	return closed
}
