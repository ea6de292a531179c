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

	"github.com/straitmesh/strait/identity"
)

// recordingConn records each write it gets.
type recordingConn struct {
	net.Conn
	writes [][]byte
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func frameHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeader)
	h[0], h[1] = 0, typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestFrameCoalescerJoinsHeaderAndBody(t *testing.T) {
	rec := &recordingConn{}
	fc := &frameCoalescer{Conn: rec}
	small := bytes.Repeat([]byte("s"), 64)
	big := bytes.Repeat([]byte("b"), smallFrame+1)
	var want [][]byte
	for _, step := range []struct {
		hdr  []byte
		body []byte
		join bool
	}{
		{frameHeader(yamuxData, uint32(len(small))), small, true},
		{frameHeader(1, 1<<20), nil, false},                       // window update: no body
		{frameHeader(2, 7), nil, false},                           // ping
		{frameHeader(yamuxData, uint32(len(big))), big, false},    // a record's worth rides with the header
		{frameHeader(yamuxData, 0), nil, false},                   // flags only (FIN)
		{frameHeader(yamuxData, uint32(len(small))), small, true}, // again
	} {
		if n, err := fc.Write(step.hdr); n != len(step.hdr) || err != nil {
			t.Fatalf("header write %d %v", n, err)
		}
		if step.body != nil {
			if n, err := fc.Write(step.body); n != len(step.body) || err != nil {
				t.Fatalf("body write %d %v", n, err)
			}
		}
		switch {
		case step.join:
			want = append(want, append(append([]byte(nil), step.hdr...), step.body...))
		case len(step.body) > smallFrame:
			want = append(want, append(append([]byte(nil), step.hdr...), step.body[:smallFrame]...), step.body[smallFrame:])
		case step.body != nil:
			want = append(want, step.hdr, step.body)
		default:
			want = append(want, step.hdr)
		}
	}
	if len(rec.writes) != len(want) {
		t.Fatalf("%d writes, want %d", len(rec.writes), len(want))
	}
	for i := range want {
		if !bytes.Equal(rec.writes[i], want[i]) {
			t.Fatalf("write %d: %d bytes, want %d", i, len(rec.writes[i]), len(want[i]))
		}
	}
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

// TestBatchedFrameIsOneWrite sends data frames through the tunnel's write
// path (frameCoalescer over TLS over Batched) on loopback: a frame of
// several TLS records reaches the socket in one write (one per maxBatch
// when larger), a frame without a body in a write of its own, and the
// peer reads every byte in order.
func TestBatchedFrameIsOneWrite(t *testing.T) {
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
	tc := tls.Client(Batched(cc), cliID.ClientConfig("b.r1.strait.local"))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	fc := &frameCoalescer{Conn: tc, batch: tc.NetConn().(*recordBatch)}

	var sent []byte
	for _, step := range []struct {
		name   string
		hdr    []byte
		body   []byte
		writes int64
	}{
		{"a frame of eight records", frameHeader(yamuxData, 128<<10), bytes.Repeat([]byte("x"), 128<<10), 1},
		{"a small frame", frameHeader(yamuxData, 100), bytes.Repeat([]byte("s"), 100), 1},
		{"a window update", frameHeader(1, 1<<20), nil, 1},
		{"a frame over maxBatch", frameHeader(yamuxData, 600<<10), bytes.Repeat([]byte("y"), 600<<10), 3},
	} {
		before := cc.writes.Load()
		fc.Write(step.hdr)
		if step.body != nil {
			if n, err := fc.Write(step.body); n != len(step.body) || err != nil {
				t.Fatalf("%s: body write %d, %v", step.name, n, err)
			}
		}
		if w := cc.writes.Load() - before; w != step.writes {
			t.Errorf("%s: %d writes to the socket, want %d", step.name, w, step.writes)
		}
		sent = append(append(sent, step.hdr...), step.body...)
	}
	tc.Close()
	if b := <-got; !bytes.Equal(b, sent) {
		t.Fatalf("peer read %d bytes, want the %d sent, in order", len(b), len(sent))
	}
}
