package catalog

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"

	"github.com/straitmesh/strait/internal/retry"
)

// transport is memberlist's network layer: UDP for probes and gossip, TCP
// for streams. It differs from memberlist's NetTransport in one way that
// matters at scale: NetTransport allocates a 64 KiB buffer for every UDP
// packet it receives, which at a few thousand packets a second turns the
// garbage collector into the busiest thing in the process and, on a small
// machine, delays probe acks into false suspicions. Here one buffer is
// reused and each packet is copied out at its own size.
type transport struct {
	log     *slog.Logger
	tcp     *net.TCPListener
	udp     *net.UDPConn
	packets chan *memberlist.Packet
	streams chan net.Conn
	closed  atomic.Bool
	done    chan struct{}
	wg      sync.WaitGroup
}

const udpRecvBuffer = 2 << 20

func newTransport(host string, port int, log *slog.Logger) (*transport, error) {
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("gossip bind address %q is not an IP address", host)
	}
	var lastErr error
	// With port 0, take the TCP port the kernel picks and the same UDP
	// port; retry if that UDP port happens to be taken.
	for attempt := 0; attempt < 10; attempt++ {
		tl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
		if err != nil {
			return nil, fmt.Errorf("gossip listen tcp %s: %w", net.JoinHostPort(host, fmt.Sprint(port)), err)
		}
		p := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: p})
		if err != nil {
			tl.Close()
			lastErr = fmt.Errorf("gossip listen udp %s: %w", net.JoinHostPort(host, fmt.Sprint(p)), err)
			if port != 0 {
				return nil, lastErr
			}
			continue
		}
		if err := ul.SetReadBuffer(udpRecvBuffer); err != nil {
			log.Debug("set gossip udp receive buffer", "err", err)
		}
		t := &transport{
			log:     log,
			tcp:     tl,
			udp:     ul,
			packets: make(chan *memberlist.Packet, 1024),
			streams: make(chan net.Conn, 64),
			done:    make(chan struct{}),
		}
		t.wg.Add(2)
		go t.readUDP()
		go t.acceptTCP()
		return t, nil
	}
	return nil, lastErr
}

func (t *transport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("gossip advertise address %q is not an IP address", ip)
		}
		if a4 := a.To4(); a4 != nil {
			a = a4
		}
		return a, port, nil
	}
	bound := t.tcp.Addr().(*net.TCPAddr).IP
	if bound.IsUnspecified() {
		priv, err := sockaddr.GetPrivateIP()
		if err != nil {
			return nil, 0, fmt.Errorf("find an address to advertise: %w", err)
		}
		if priv == "" {
			return nil, 0, errors.New("no private address to advertise: set gossip.advertise")
		}
		bound = net.ParseIP(priv)
	}
	if b4 := bound.To4(); b4 != nil {
		bound = b4
	}
	return bound, t.port(), nil
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		ap = ua.AddrPort()
	}
	_, err = t.udp.WriteToUDPAddrPort(b, ap)
	return time.Now(), err
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func (t *transport) StreamCh() <-chan net.Conn { return t.streams }

func (t *transport) Shutdown() error {
	if t.closed.Swap(true) {
		return nil
	}
	close(t.done)
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
	return nil
}

func (t *transport) readUDP() {
	defer t.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.closed.Load() {
				return
			}
			t.log.Debug("gossip udp read", "err", err)
			continue
		}
		if n < 1 {
			continue
		}
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: net.UDPAddrFromAddrPort(from), Timestamp: ts}
		select {
		case t.packets <- p:
		case <-t.done:
			return
		}
	}
}

func (t *transport) acceptTCP() {
	defer t.wg.Done()
	b := retry.AcceptBackoff()
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closed.Load() {
				return
			}
			t.log.Debug("gossip tcp accept", "err", err)
			if !b.Wait(t.done) {
				return
			}
			continue
		}
		b.Reset()
		select {
		case t.streams <- c:
		case <-t.done:
			c.Close()
			return
		}
	}
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)
