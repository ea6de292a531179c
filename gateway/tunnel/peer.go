package tunnel

import (
	"crypto/tls"
	"fmt"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/identity"
)

// Peer is a gateway the pool connects to: the data address the catalog
// lists, and the cluster and region the catalog says are there. The pool
// keeps its tunnels per Peer, not per address, and every connection it
// makes to a Peer is pinned: the certificate the gateway at Addr presents
// must name exactly Cluster and Region, or the connection is closed and
// never used (*MismatchError).
type Peer struct {
	Addr            string
	Cluster, Region string
}

// PeerOf is the peer behind a remote candidate, as the catalog lists it.
func PeerOf(c route.Candidate) Peer {
	return Peer{Addr: c.Addr, Cluster: c.Cluster, Region: c.Region}
}

// MismatchError says that the gateway at a peer's address presented a
// valid certificate of the federation for another cluster or region than
// the one the catalog lists there: an impostor, a hijacked path or a
// stale catalog entry. It is a fault of that candidate, not a residency
// refusal, so a flow moves on to the next one.
type MismatchError struct {
	Peer Peer        // whom the pool expected
	Got  identity.ID // whom the certificate names
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("gateway at %s presented %s, expected cluster %s in region %s",
		e.Peer.Addr, e.Got, e.Peer.Cluster, e.Peer.Region)
}

// verify checks that the verified peer certificate of cs names exactly
// p's cluster and region. The trust domain and chain were checked in the
// handshake (identity.Bundle.ClientConfig).
func (p Peer) verify(b *identity.Bundle, cs tls.ConnectionState) error {
	id, err := b.PeerID(cs)
	if err != nil {
		return fmt.Errorf("gateway at %s: %w", p.Addr, err)
	}
	if id.Cluster != p.Cluster || id.Region != p.Region {
		return &MismatchError{Peer: p, Got: id}
	}
	return nil
}
