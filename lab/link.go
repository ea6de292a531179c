package lab

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Link is the emulated network path from one cluster to another's gateway.
// Its faults apply to new and open connections alike.
type Link struct {
	From, To string
	proxy    *toxiproxy.Proxy

	mu     sync.Mutex
	toxics map[string]bool
}

type linkSet struct {
	server *toxiproxy.ApiServer
	mu     sync.Mutex
	links  map[[2]string]*Link // (from, to)
	byAddr map[[2]string]*Link // (from, upstream data addr)
	// hijacked sends (from, upstream data addr) somewhere else (Lab.Hijack).
	hijacked map[[2]string]string
}

func newLinkSet() *linkSet {
	return &linkSet{
		server:   toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		links:    map[[2]string]*Link{},
		byAddr:   map[[2]string]*Link{},
		hijacked: map[[2]string]string{},
	}
}

func (s *linkSet) add(from, to, upstream string) error {
	p := toxiproxy.NewProxy(s.server, from+"->"+to, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return fmt.Errorf("lab: start link %s->%s: %w", from, to, err)
	}
	l := &Link{From: from, To: to, proxy: p, toxics: map[string]bool{}}
	s.mu.Lock()
	s.links[[2]string{from, to}] = l
	s.byAddr[[2]string{from, upstream}] = l
	s.mu.Unlock()
	return nil
}

func (s *linkSet) get(from, to string) *Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links[[2]string{from, to}]
}

// dial connects from cluster from to addr, through the link when addr is
// another lab gateway.
func (s *linkSet) dial(ctx context.Context, from, addr string) (net.Conn, error) {
	s.mu.Lock()
	l := s.byAddr[[2]string{from, addr}]
	to, hijacked := s.hijacked[[2]string{from, addr}]
	s.mu.Unlock()
	target := addr
	switch {
	case hijacked:
		target = to
	case l != nil:
		target = l.proxy.Listen
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", target)
}

// hijack sends new connections from cluster from to addr to another
// address; to "" restores the path.
func (s *linkSet) hijack(from, addr, to string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if to == "" {
		delete(s.hijacked, [2]string{from, addr})
		return
	}
	s.hijacked[[2]string{from, addr}] = to
}

func (s *linkSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		l.proxy.Stop()
	}
}

// Addr returns the address the link listens on.
func (l *Link) Addr() string { return l.proxy.Listen }

// SetLatency delays every byte by d in each direction (so a round trip
// costs 2d), with jitter up to j.
func (l *Link) SetLatency(d, j time.Duration) error {
	for _, stream := range []string{"upstream", "downstream"} {
		if err := l.set("latency_"+stream, "latency", stream, 1,
			fmt.Sprintf(`{"latency":%d,"jitter":%d}`, d.Milliseconds(), j.Milliseconds())); err != nil {
			return err
		}
	}
	return nil
}

// SetLoss makes a fraction p (0..1) of new connections lose every packet:
// they open but nothing passes, as when a path drops all traffic of a flow.
// toxiproxy works on TCP streams, so loss is per connection, not per packet.
func (l *Link) SetLoss(p float64) error {
	if p <= 0 {
		return l.remove("loss")
	}
	return l.set("loss", "timeout", "upstream", float32(p), `{"timeout":0}`)
}

// SetPacketLoss gives the link a packet loss rate p (0..1) both ways: a
// lost segment holds back the bytes behind it for retransmit (one round
// trip) before they arrive, as a TCP receiver sees it; see packetLoss for
// what that leaves out. Unlike SetLoss every connection passes.
func (l *Link) SetPacketLoss(p float64, retransmit time.Duration) error {
	registerLoss()
	for _, stream := range []string{"upstream", "downstream"} {
		if p <= 0 {
			if err := l.remove("packet_loss_" + stream); err != nil {
				return err
			}
			continue
		}
		if err := l.set("packet_loss_"+stream, "strait_packet_loss", stream, 1,
			fmt.Sprintf(`{"probability":%g,"stall":%d}`, p, retransmit.Milliseconds())); err != nil {
			return err
		}
	}
	return nil
}

// Partition cuts the link: open and new connections stall, nothing passes.
func (l *Link) Partition() error {
	for _, stream := range []string{"upstream", "downstream"} {
		if err := l.set("partition_"+stream, "timeout", stream, 1, `{"timeout":0}`); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes every fault from the link.
func (l *Link) Heal() error {
	l.mu.Lock()
	names := make([]string, 0, len(l.toxics))
	for n := range l.toxics {
		names = append(names, n)
	}
	l.mu.Unlock()
	for _, n := range names {
		if err := l.remove(n); err != nil {
			return err
		}
	}
	return nil
}

func (l *Link) set(name, typ, stream string, toxicity float32, attrs string) error {
	if err := l.remove(name); err != nil {
		return err
	}
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`, name, typ, stream, toxicity, attrs)
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		return fmt.Errorf("lab: link %s->%s: add %s: %w", l.From, l.To, name, err)
	}
	l.mu.Lock()
	l.toxics[name] = true
	l.mu.Unlock()
	return nil
}

func (l *Link) remove(name string) error {
	l.mu.Lock()
	had := l.toxics[name]
	delete(l.toxics, name)
	l.mu.Unlock()
	if !had {
		return nil
	}
	if err := l.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		return fmt.Errorf("lab: link %s->%s: remove %s: %w", l.From, l.To, name, err)
	}
	return nil
}
