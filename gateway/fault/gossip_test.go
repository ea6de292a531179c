package fault

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// fakeTransport records what memberlist would send.
type fakeTransport struct {
	mu      sync.Mutex
	sent    []string // addresses written to
	packets chan *memberlist.Packet
	streams chan net.Conn
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{packets: make(chan *memberlist.Packet, 16), streams: make(chan net.Conn, 16)}
}

func (f *fakeTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IPv4(127, 0, 0, 1), 1, nil
}
func (f *fakeTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	f.mu.Lock()
	f.sent = append(f.sent, addr)
	f.mu.Unlock()
	return time.Now(), nil
}
func (f *fakeTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return f.WriteTo(b, a.Addr)
}
func (f *fakeTransport) PacketCh() <-chan *memberlist.Packet { return f.packets }
func (f *fakeTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	a, b := net.Pipe()
	b.Close()
	return a, nil
}
func (f *fakeTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return f.DialTimeout(a.Addr, timeout)
}
func (f *fakeTransport) StreamCh() <-chan net.Conn { return f.streams }
func (f *fakeTransport) Shutdown() error           { return nil }

func (f *fakeTransport) sentTo() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

// TestFaultGossipTransport: packets to and from a blackholed peer are
// dropped, others pass; latency delays packets toward its peer; with no
// fault in force everything passes.
func TestFaultGossipTransport(t *testing.T) {
	c, _, _, _ := newTestController(t, true)
	inner := newFakeTransport()
	peers := map[string]string{"10.0.0.2:7946": "b", "10.0.0.3:7946": "c"}
	tr := c.Gossip(inner, func(addr string) string { return peers[addr] })
	defer tr.Shutdown()

	if _, err := c.Inject(Spec{ID: "bh", Kind: Blackhole, Peers: []string{"b"}, Lease: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	tr.WriteToAddress([]byte("x"), memberlist.Address{Addr: "10.0.0.2:7946"})
	tr.WriteToAddress([]byte("x"), memberlist.Address{Addr: "10.0.0.3:7946"})
	if got := inner.sentTo(); len(got) != 1 || got[0] != "10.0.0.3:7946" {
		t.Fatalf("sent to %v, want only c", got)
	}
	if _, err := tr.DialAddressTimeout(memberlist.Address{Addr: "10.0.0.2:7946"}, time.Second); err == nil {
		t.Fatal("dialled a blackholed peer's gossip")
	}
	from := func(addr string) *memberlist.Packet {
		ua, _ := net.ResolveUDPAddr("udp", addr)
		return &memberlist.Packet{Buf: []byte(addr), From: ua}
	}
	inner.packets <- from("10.0.0.2:7946")
	inner.packets <- from("10.0.0.3:7946")
	select {
	case p := <-tr.PacketCh():
		if string(p.Buf) != "10.0.0.3:7946" {
			t.Fatalf("received %s, want c's packet only", p.Buf)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("c's packet did not pass")
	}
	select {
	case p := <-tr.PacketCh():
		t.Fatalf("a second packet passed: %s", p.Buf)
	case <-time.After(20 * time.Millisecond):
	}

	if _, err := c.Undo("bh"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inject(Spec{ID: "slow", Kind: Latency, Peers: []string{"c"}, Delay: Duration(50 * time.Millisecond), Lease: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	tr.WriteToAddress([]byte("x"), memberlist.Address{Addr: "10.0.0.3:7946"})
	if got := inner.sentTo(); len(got) != 1 {
		t.Fatalf("a delayed packet went out at once: %v", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(inner.sentTo()) != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if len(inner.sentTo()) != 2 {
		t.Fatal("the delayed packet never went out")
	}
	if _, err := c.Undo("slow"); err != nil {
		t.Fatal(err)
	}
	tr.WriteToAddress([]byte("x"), memberlist.Address{Addr: "10.0.0.2:7946"})
	if len(inner.sentTo()) != 3 {
		t.Fatal("a packet with no fault in force did not go out at once")
	}
}

// TestFaultLatencyQueuesWritesInOrder: writes toward a peer under
// latency return at once and arrive in order, each the delay late (one
// way, pipelined); a close waits for them.
func TestFaultLatencyQueuesWritesInOrder(t *testing.T) {
	c, _, _, _ := newTestController(t, true)
	a, b := net.Pipe()
	defer b.Close()
	conn := c.Wrap(a, "b")
	if _, err := c.Inject(Spec{ID: "slow", Kind: Latency, Peers: []string{"b"}, Delay: Duration(100 * time.Millisecond), Lease: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	start := time.Now()
	for _, s := range []string{"one ", "two ", "three"} {
		if _, err := conn.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Fatalf("writes took %s: the delay was paid in turn", took)
	}
	conn.Close()
	all := <-got
	if string(all) != "one two three" {
		t.Fatalf("read %q", all)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 250*time.Millisecond {
		t.Fatalf("arrived after %s, want about 100ms", took)
	}
}

// TestFaultLossStallsAWrite: at 100% loss every write toward the peer
// costs a retransmission timeout.
func TestFaultLossStallsAWrite(t *testing.T) {
	c, _, _, _ := newTestController(t, true)
	a, b := net.Pipe()
	defer b.Close()
	conn := c.Wrap(a, "b")
	defer conn.Close()
	if _, err := c.Inject(Spec{ID: "lossy", Kind: Loss, Peers: []string{"b"}, Percent: 100, Lease: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go conn.Write([]byte("x"))
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < RetransmitTimeout {
		t.Fatalf("a lost write arrived after %s, want a retransmission timeout (%s)", took, RetransmitTimeout)
	}
}
