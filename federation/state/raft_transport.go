package state

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStream is the Raft stream layer: mTLS in both directions with the
// gateway's certificate, so only identities of the federation's trust
// domain exchange Raft traffic.
type tlsStream struct {
	ln     net.Listener
	adv    net.Addr
	server *tls.Config
	client *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// Accept returns the next connection; its handshake runs on first read,
// so a slow or foreign peer never blocks the accept loop.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, s.server), nil
}

// Dial opens an mTLS connection to another server's Raft address.
func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.client}
	c, err := d.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", addr, err)
	}
	return c, nil
}

func (s *tlsStream) Close() error   { return s.ln.Close() }
func (s *tlsStream) Addr() net.Addr { return s.adv }
