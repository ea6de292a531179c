package fault

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// errGossipHeld is what a gossip dial to a held or killed peer fails with.
var errGossipHeld = errors.New("gossip to this peer is dropped by a fault")

// transport is memberlist's transport under the rules: packets and
// streams to and from a peer the rules cut or hold are dropped (every
// peer under kill and freeze), a share of the packets toward a peer
// under loss is dropped, and packets toward a peer under latency wait.
type transport struct {
	memberlist.NodeAwareTransport
	c       *Controller
	peerOf  func(addr string) string
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// Gossip wraps a memberlist transport; peerOf names the cluster at a
// gossip address ("" when none is known). Without fault mode it returns
// t itself.
func (c *Controller) Gossip(t memberlist.NodeAwareTransport, peerOf func(addr string) string) memberlist.NodeAwareTransport {
	if !c.Enabled() {
		return t
	}
	w := &transport{NodeAwareTransport: t, c: c, peerOf: peerOf,
		packets: make(chan *memberlist.Packet, 1024), streams: make(chan net.Conn, 64), done: make(chan struct{})}
	w.wg.Add(2)
	go w.forwardPackets()
	go w.forwardStreams()
	return w
}

func (t *transport) effect(addr string) Effect {
	r := t.c.rules.Load()
	if r == nil {
		return Effect{}
	}
	return r.For(t.peerOf(addr))
}

func (t *transport) forwardPackets() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.PacketCh()
	for {
		select {
		case <-t.done:
			return
		case p := <-in:
			if t.c.rules.Load() != nil && p.From != nil {
				if e := t.effect(p.From.String()); e.Cut || e.Hold {
					continue
				}
			}
			select {
			case t.packets <- p:
			case <-t.done:
				return
			}
		}
	}
}

func (t *transport) forwardStreams() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case conn := <-in:
			peer := ""
			if t.c.rules.Load() != nil {
				peer = t.peerOf(conn.RemoteAddr().String())
				if e := t.c.rules.Load().For(peer); e.Cut || e.Hold {
					conn.Close()
					continue
				}
			}
			select {
			case t.streams <- t.c.Wrap(conn, peer):
			case <-t.done:
				conn.Close()
				return
			}
		}
	}
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *transport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.c.rules.Load() == nil {
		return t.NodeAwareTransport.WriteToAddress(b, a)
	}
	e := t.effect(a.Addr)
	if e.Drop() {
		return time.Now(), nil // lost on the way, as UDP is
	}
	if d := (Effect{Delay: e.Delay, Jitter: e.Jitter}).Wait(0); d > 0 {
		cp := append([]byte(nil), b...)
		time.AfterFunc(d, func() {
			select {
			case <-t.done:
			default:
				_, _ = t.NodeAwareTransport.WriteToAddress(cp, a)
			}
		})
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.c.rules.Load() == nil {
		return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	}
	peer := t.peerOf(a.Addr)
	if e := t.c.rules.Load().For(peer); e.Cut || e.Hold {
		return nil, fmt.Errorf("dial gossip %s: %w", a.Addr, errGossipHeld)
	}
	conn, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return t.c.Wrap(conn, peer), nil
}

func (t *transport) Shutdown() error {
	err := t.NodeAwareTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
