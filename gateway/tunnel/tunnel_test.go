package tunnel

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/tunnel/record"
	"github.com/straitmesh/strait/identity"
)

func frameHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeader)
	h[0], h[1] = 0, typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestFrameIsOneWrite sends data frames through the tunnel's write path
// (frameWriter over the record layer) on loopback to a crypto/tls peer: a
// frame of several TLS records reaches the socket in one write (one per
// 256 KiB when larger), a frame of one record or without a body in a
// write of its own, and the peer reads every byte in order.
func TestFrameIsOneWrite(t *testing.T) {
	ca, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvID, cliID := bundle(t, ca, "r1", "b"), bundle(t, ca, "r1", "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer raw.Close()
		b, _ := io.ReadAll(tls.Server(raw, srvID.ServerConfig()))
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: raw}
	sc := SecureClient(cc, cliID.ClientConfig("b.r1.strait.local"))
	if err := sc.TLS.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	conn, err := sc.Switch(true)
	rc, ok := conn.(*record.Conn)
	if err != nil || !ok {
		t.Fatalf("switch to the record layer: %T, %v", conn, err)
	}
	fw := newFrameWriter(conn, rc)

	var sent []byte
	for _, step := range []struct {
		name   string
		hdr    []byte
		body   []byte
		writes int64
	}{
		{"a frame of nine records", frameHeader(0, frameSize), bytes.Repeat([]byte("x"), frameSize), 1},
		{"a small frame", frameHeader(0, 100), bytes.Repeat([]byte("s"), 100), 1},
		{"a window update", frameHeader(1, 1<<20), nil, 1},
		{"a frame over maxBatch", frameHeader(0, 600<<10), bytes.Repeat([]byte("y"), 600<<10), 3},
	} {
		before := cc.writes.Load()
		frame := append(append([]byte(nil), step.hdr...), step.body...)
		if n, err := fw.Write(frame); n != len(frame) || err != nil {
			t.Fatalf("%s: write %d, %v", step.name, n, err)
		}
		if w := cc.writes.Load() - before; w != step.writes {
			t.Errorf("%s: %d writes to the socket, want %d", step.name, w, step.writes)
		}
		sent = append(append(sent, step.hdr...), step.body...)
	}
	conn.Close()
	if b := <-got; !bytes.Equal(b, sent) {
		t.Fatalf("peer read %d bytes, want the %d sent, in order", len(b), len(sent))
	}
}
