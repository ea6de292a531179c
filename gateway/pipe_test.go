package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-yamux/v5"

	"github.com/straitmesh/strait/internal/connlimit"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// A flow between two TCP sockets (a local candidate) moves bytes with
// splice(2) in chunks, both ways, keeps half-close, and its activity
// clock follows the bytes.
func TestSpliceBetweenTCPSockets(t *testing.T) {
	client, gwClient := tcpPair(t)
	gwUp, server := tcpPair(t)
	g := &Gateway{}
	up := make([]byte, 3*spliceChunk+12345) // more than one chunk
	down := make([]byte, 1<<20)
	rand.Read(up)
	rand.Read(down)
	type result struct{ ab, ba int64 }
	done := make(chan result, 1)
	go func() {
		ab, ba := g.splice(gwClient, trackConn(gwUp, func() {}, nil), nil, nil)
		done <- result{ab, ba}
	}()
	var f *flow
	for f == nil {
		g.flows.mu.Lock()
		for fl := range g.flows.m {
			f = fl
		}
		g.flows.mu.Unlock()
	}
	before := f.last.Load()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server) // ends when the client half-closes
		got <- b
	}()
	if _, err := client.Write(up); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	if b := <-got; !bytes.Equal(b, up) {
		t.Fatalf("server got %d bytes, want %d intact", len(b), len(up))
	}
	// The other direction still works after the half-close.
	if _, err := server.Write(down); err != nil {
		t.Fatal(err)
	}
	server.CloseWrite()
	b, _ := io.ReadAll(client)
	if !bytes.Equal(b, down) {
		t.Fatalf("client got %d bytes, want %d intact", len(b), len(down))
	}
	r := <-done
	if r.ab != int64(len(up)) || r.ba != int64(len(down)) {
		t.Fatalf("counted %d/%d bytes, want %d/%d", r.ab, r.ba, len(up), len(down))
	}
	if f.last.Load() <= before {
		t.Fatal("activity clock did not move with the bytes")
	}
	if len(g.flows.m) != 0 {
		t.Fatal("flow still registered after both directions ended")
	}
}

func TestReapClosesOnlyIdleFlows(t *testing.T) {
	a1, b1 := tcpPair(t)
	a2, b2 := tcpPair(t)
	var s flowSet
	idle, busy := newFlow(a1, b1), newFlow(a2, b2)
	s.add(idle)
	s.add(busy)
	idle.last.Store(time.Now().Add(-time.Minute).UnixNano())
	if n := s.reap(time.Now().Add(-time.Second)); n != 1 {
		t.Fatalf("reaped %d flows, want 1", n)
	}
	a1.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := a1.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle flow's connection still open")
	}
	a2.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := a2.Write([]byte("x")); err != nil {
		t.Fatalf("busy flow's connection closed: %v", err)
	}
}

// A connection in a listener's budget keeps splice(2) and half-close:
// unwrap finds the TCP socket beneath it, and closeWrite half-closes it.
func TestBudgetedConnKeepsSpliceAndHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bl := connlimit.NewListener(ln, connlimit.Config{Max: 1})
	defer bl.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := bl.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-accepted
	defer c.Close()
	if _, ok := unwrap(c).(*net.TCPConn); !ok {
		t.Fatalf("unwrap(%T) = %T, want *net.TCPConn", c, unwrap(c))
	}
	closeWrite(c)
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read %v after the half-close, want EOF", err)
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("half-closed connection no longer reads: %v", err)
	}
}

// The answer of an accepted stream waits for the service's first bytes
// only when bytes of the peer's are on their way to the service: read
// with the header, or received on the stream. A stream on which the peer
// holds its bytes until the answer gets it at once; a connection of its
// own, where nothing says, waits.
func TestAnswerWaitsOnlyForBytesOnTheirWay(t *testing.T) {
	c, s := tcpPair(t)
	client, err := yamux.Client(c, yamux.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := yamux.Server(s, yamux.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	open := func(first string) (*yamux.Stream, *yamux.Stream) {
		t.Helper()
		out, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Write([]byte(first)); err != nil {
			t.Fatal(err)
		}
		in, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		return out, in
	}

	header := "header"
	_, held := open(header)
	if _, err := io.ReadFull(held, make([]byte, len(header))); err != nil {
		t.Fatal(err)
	}
	if got := answerWaitFor(held, nil); got != 0 {
		t.Errorf("a stream with nothing beyond its header waits %v for the service", got)
	}
	if got := answerWaitFor(held, []byte("early")); got != answerWait {
		t.Errorf("a stream with bytes read with its header waits %v, want %v", got, answerWait)
	}

	out, early := open(header)
	if _, err := io.ReadFull(early, make([]byte, len(header))); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); early.Buffered() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := answerWaitFor(trackConn(early, func() {}, nil), nil); got != answerWait {
		t.Errorf("a stream with bytes received beyond its header waits %v, want %v", got, answerWait)
	}

	own, _ := tcpPair(t)
	if got := answerWaitFor(own, nil); got != answerWait {
		t.Errorf("a connection of its own waits %v, want %v", got, answerWait)
	}
}
