package record

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const stream = 6 << 20 // bytes per interop transfer

func checkSuite(t *testing.T, c *Conn) {
	id := c.ConnectionState().CipherSuite
	t.Logf("negotiated %s", tls.CipherSuiteName(id))
	if _, err := suiteFor(id); err != nil {
		t.Fatal(err)
	}
}

// Our Conn writes, a plain crypto/tls.Conn reads, on either side.
func TestInteropWrite(t *testing.T) {
	t.Run("client writes", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		c := client.switchTo(t, true)
		checkSuite(t, c)
		transfer(t, stream, 64<<10, c.Write, c.CloseWrite, server.tc)
	})
	t.Run("server writes", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		s := server.switchTo(t, false)
		transfer(t, stream, 64<<10, s.Write, s.CloseWrite, client.tc)
	})
}

// A plain crypto/tls.Conn writes, our Conn reads, on either side.
func TestInteropRead(t *testing.T) {
	t.Run("client reads", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		c := client.switchTo(t, true)
		transfer(t, stream, 64<<10, server.tc.Write, server.tc.CloseWrite, c)
	})
	t.Run("server reads", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		s := server.switchTo(t, false)
		transfer(t, stream, 64<<10, client.tc.Write, client.tc.CloseWrite, s)
	})
}

// Both ends are ours, for the suites crypto/tls cannot be made to pick.
func TestSuites(t *testing.T) {
	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			c, s := conns(t, id)
			transfer(t, 2<<20, 32<<10, c.Write, c.CloseWrite, s)
			transfer(t, 2<<20, 32<<10, s.WriteOwned, s.CloseWrite, c)
		})
	}
}

// The traffic key derivation matches RFC 8448 §3 (the vector of
// crypto/tls's own TestTrafficKey).
func TestTrafficKeyRFC8448(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		must(t, err)
		return b
	}
	secret := unhex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38")
	s, err := suiteFor(tls.TLS_AES_128_GCM_SHA256)
	must(t, err)
	key, err := s.expandLabel(secret, "key", 16)
	must(t, err)
	iv, err := s.expandLabel(secret, "iv", 12)
	must(t, err)
	if want := unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc"); !bytes.Equal(key, want) {
		t.Errorf("key % x, want % x", key, want)
	}
	if want := unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30"); !bytes.Equal(iv, want) {
		t.Errorf("iv % x, want % x", iv, want)
	}
}

func TestSwitchRefuses(t *testing.T) {
	client, _ := tlsPair(t, pairOpts{})
	if _, err := Switch(client.tc, client.raw, new(Capture), true); !errors.Is(err, ErrUnsupported) {
		t.Errorf("switch without secrets: %v, want ErrUnsupported", err)
	}
	if _, err := suiteFor(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); !errors.Is(err, ErrUnsupported) {
		t.Errorf("TLS 1.2 suite: %v, want ErrUnsupported", err)
	}
	cs, _ := tcpPair(t)
	tc := tls.Client(cs, &tls.Config{InsecureSkipVerify: true})
	if _, err := Switch(tc, NewRaw(cs), new(Capture), true); !errors.Is(err, ErrUnsupported) {
		t.Errorf("switch before handshake: %v, want ErrUnsupported", err)
	}
}

// WriteOwned puts the same bytes on the wire as Write and leaves p as it was.
func TestWriteOwned(t *testing.T) {
	data := randomBytes(7, 1<<20)
	orig := bytes.Clone(data)
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"cap==len", data[: len(data)-1 : len(data)-1]},
		{"cap>len", data[:len(data)-1]},
		{"cap==len one record", data[:100:100]},
		{"cap>len one record", data[:100]},
		{"cap==len records exactly", data[: 3*maxPlaintext : 3*maxPlaintext]},
		{"cap>len records exactly", data[:3*maxPlaintext]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w1, r1 := fixedConn(t, true, nil)
			w2, r2 := fixedConn(t, true, nil)
			n1, err1 := w1.Write(tc.p)
			n2, err2 := w2.WriteOwned(tc.p)
			if n1 != len(tc.p) || n2 != len(tc.p) || err1 != nil || err2 != nil {
				t.Fatalf("Write %d, %v; WriteOwned %d, %v; want %d, nil", n1, err1, n2, err2, len(tc.p))
			}
			if !bytes.Equal(r1.out.Bytes(), r2.out.Bytes()) {
				t.Fatal("WriteOwned wrote other bytes than Write")
			}
			if !bytes.Equal(data, orig) {
				t.Fatal("WriteOwned changed p or the byte after it")
			}
			rd, _ := fixedConn(t, false, &r2.out)
			got, err := io.ReadAll(rd)
			if !errors.Is(err, io.ErrUnexpectedEOF) && err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.p) {
				t.Fatal("the records do not open to p")
			}
		})
	}
	t.Run("interop", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		c := client.switchTo(t, true)
		src := randomBytes(9, stream)
		want := bytes.Clone(src)
		errc := make(chan error, 1)
		go func() {
			// Alternate cap==len and cap>len writes out of one buffer.
			errc <- writeRandomly(src, 9, func(p []byte) (int, error) {
				if len(p)%2 == 0 {
					p = p[:len(p):len(p)]
				}
				return c.WriteOwned(p)
			}, c.CloseWrite)
		}()
		got := readAll(t, server.tc, 32<<10)
		must(t, <-errc)
		if !bytes.Equal(got, want) || !bytes.Equal(src, want) {
			t.Fatal("stream differs, or WriteOwned changed its input")
		}
	})
}

// WriteFrames puts the same records on the wire as WriteOwned of each
// frame in turn, in fewer writes, and leaves the frames as they were.
func TestWriteFrames(t *testing.T) {
	data := randomBytes(11, 1<<20)
	orig := bytes.Clone(data)
	// Frames out of one buffer, as a multiplexer's pool hands them: each
	// followed by the next one's bytes, sizes around the record and batch
	// limits.
	var frames [][]byte
	off := 0
	for _, n := range []int{12, 100, 1, maxPlaintext, 3*maxPlaintext + 5, 300 << 10, 12, 40 << 10} {
		frames = append(frames, data[off:off+n])
		off += n
	}
	w1, r1 := fixedConn(t, true, nil)
	w2, r2 := fixedConn(t, true, nil)
	total := 0
	for _, f := range frames {
		n, err := w1.WriteOwned(f)
		must(t, err)
		total += n
	}
	counted := &countingWriter{recorder: r2}
	w2.conn = counted
	n, err := w2.WriteFrames(frames)
	if n != total || err != nil {
		t.Fatalf("WriteFrames %d, %v; want %d, nil", n, err, total)
	}
	if !bytes.Equal(r1.out.Bytes(), r2.out.Bytes()) {
		t.Fatal("WriteFrames wrote other bytes than WriteOwned of each frame")
	}
	if !bytes.Equal(data, orig) {
		t.Fatal("WriteFrames changed a frame or the byte after it")
	}
	if want := (total + batchLen - 1) / batchLen; counted.writes > want+1 {
		t.Errorf("%d bytes of frames took %d writes, want about %d", total, counted.writes, want)
	}
	rd, _ := fixedConn(t, false, &r2.out)
	got, err := io.ReadAll(rd)
	if !errors.Is(err, io.ErrUnexpectedEOF) && err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[:off]) {
		t.Fatal("the records do not open to the frames")
	}
}

// countingWriter counts the writes to a recorder.
type countingWriter struct {
	*recorder
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.recorder.Write(p)
}

// Any read buffer size gives the same stream.
func TestReadSizes(t *testing.T) {
	for _, n := range []int{1, 100, 16 << 10, 1 << 20} {
		t.Run(byteSize(n), func(t *testing.T) {
			client, server := tlsPair(t, pairOpts{})
			s := server.switchTo(t, false)
			size := stream
			if n == 1 {
				size = 300 << 10
			}
			transfer(t, size, n, client.tc.Write, client.tc.CloseWrite, s)
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// A switched client ignores the NewSessionTicket records of a server that
// sends them, and still reads the server's data.
func TestClientIgnoresSessionTickets(t *testing.T) {
	client, server := tlsPair(t, pairOpts{tickets: true})
	c := client.switchTo(t, true)
	transfer(t, 1<<20, 32<<10, server.tc.Write, server.tc.CloseWrite, c)

	// With no data, what precedes close_notify can only be tickets.
	client, server = tlsPair(t, pairOpts{tickets: true})
	c = client.switchTo(t, true)
	must(t, server.tc.CloseWrite())
	if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want 0, io.EOF", n, err)
	}
	if c.in.seq < 2 {
		t.Errorf("read %d records: no session ticket before close_notify", c.in.seq)
	}
}

// Our writer updates its key every few records; crypto/tls follows.
func TestKeyLimit(t *testing.T) {
	client, server := tlsPair(t, pairOpts{})
	c := client.switchTo(t, true)
	c.keyLimit = 4
	transfer(t, 2<<20, 32<<10, c.Write, c.CloseWrite, server.tc)
	if c.out.updates < 20 {
		t.Errorf("%d key updates, want many", c.out.updates)
	}
}

// crypto/tls answers our KeyUpdate with request_update 1 with its own
// before its next data, and our reader follows it.
func TestKeyUpdateRequested(t *testing.T) {
	client, server := tlsPair(t, pairOpts{})
	c := client.switchTo(t, true)
	must(t, c.sendKeyUpdate(true))
	_, err := c.Write([]byte("ping"))
	must(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(server.tc, buf)
	must(t, err)
	if string(buf) != "ping" {
		t.Fatalf("server read %q", buf)
	}
	transfer(t, 1<<20, 32<<10, server.tc.Write, server.tc.CloseWrite, c)
	if c.in.updates != 1 || c.out.updates != 1 {
		t.Errorf("read key updated %d times, write key %d times; want 1, 1", c.in.updates, c.out.updates)
	}
}

// Our reader that is asked for a KeyUpdate sends one before its next data.
func TestKeyUpdateAnswered(t *testing.T) {
	a, b := conns(t, tls.TLS_AES_128_GCM_SHA256)
	must(t, a.sendKeyUpdate(true))
	_, err := a.Write([]byte("x"))
	must(t, err)
	buf := make([]byte, 10)
	if n, err := b.Read(buf); n != 1 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	transfer(t, 100<<10, 1<<10, b.Write, b.CloseWrite, a)
	if b.out.updates != 1 || a.in.updates != 1 {
		t.Errorf("b sent %d key updates, a read %d; want 1", b.out.updates, a.in.updates)
	}
}

func TestClose(t *testing.T) {
	t.Run("CloseWrite", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		c := client.switchTo(t, true)
		must(t, c.CloseWrite())
		if _, err := server.tc.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("crypto/tls read %v, want io.EOF", err)
		}
		if _, err := c.Write([]byte("x")); err == nil {
			t.Error("write after CloseWrite succeeded")
		}
		// The other direction still works.
		transfer(t, 100<<10, 1<<10, server.tc.Write, server.tc.CloseWrite, c)
	})
	t.Run("Close", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		c := client.switchTo(t, true)
		must(t, c.Close())
		if _, err := server.tc.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("crypto/tls read %v, want io.EOF", err)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second close: %v, want net.ErrClosed", err)
		}
	})
	t.Run("peer closes", func(t *testing.T) {
		client, server := tlsPair(t, pairOpts{})
		s := server.switchTo(t, false)
		must(t, client.tc.Close())
		for range 2 {
			if _, err := s.Read(make([]byte, 10)); err != io.EOF {
				t.Errorf("read %v, want io.EOF", err)
			}
		}
	})
}

// flipper relays bytes between two sockets and, when armed, flips the last
// byte of the next chunk it relays from the client.
type flipper struct {
	armed atomic.Bool
}

func (f *flipper) wrap(t testing.TB) func(net.Conn) net.Conn {
	return func(ss net.Conn) net.Conn {
		a, b := tcpPair(t) // the server's end is b; ss's bytes go to a
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := ss.Read(buf)
				if n > 0 && f.armed.Swap(false) {
					buf[n-1] ^= 0x40
				}
				if n > 0 {
					if _, err := a.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					a.Close()
					return
				}
			}
		}()
		go func() { _, _ = io.Copy(ss, a); ss.Close() }()
		return b
	}
}

// No tampered, oversized or mistyped record is ever taken for data.
func TestTamper(t *testing.T) {
	t.Run("flipped byte", func(t *testing.T) {
		var f flipper
		client, server := tlsPair(t, pairOpts{wrap: f.wrap(t)})
		s := server.switchTo(t, false)
		_, err := client.tc.Write([]byte("hello"))
		must(t, err)
		buf := make([]byte, 100)
		if n, err := s.Read(buf); n != 5 || err != nil || string(buf[:5]) != "hello" {
			t.Fatalf("read %d, %v", n, err)
		}
		f.armed.Store(true)
		_, err = client.tc.Write([]byte("world"))
		must(t, err)
		for range 2 {
			n, err := s.Read(buf)
			if n != 0 || !errors.Is(err, ErrBadRecord) {
				t.Fatalf("read %d, %v; want 0, ErrBadRecord", n, err)
			}
		}
	})
	for _, tc := range []struct {
		name string
		hdr  []byte
	}{
		{"too long", []byte{23, 3, 3, 0x41, 0x01}},
		{"change_cipher_spec", []byte{20, 3, 3, 0, 1}},
		{"alert", []byte{21, 3, 3, 0, 2}},
		{"version", []byte{23, 3, 1, 0, 20}},
		{"too short", []byte{23, 3, 3, 0, 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, ss := tcpPair(t)
			st := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
			s, err := newConn(ss, st, false, make([]byte, 32), make([]byte, 32))
			must(t, err)
			_, err = cs.Write(append(tc.hdr, make([]byte, 17000)...))
			must(t, err)
			if n, err := s.Read(make([]byte, 1<<20)); n != 0 || !errors.Is(err, ErrBadRecord) {
				t.Fatalf("read %d, %v; want 0, ErrBadRecord", n, err)
			}
		})
	}
}

// gate holds the server's reads once it has sent its flight, until opened.
type gate struct {
	net.Conn
	wrote atomic.Bool
	open  chan struct{}
}

func (g *gate) Write(p []byte) (int, error) { g.wrote.Store(true); return g.Conn.Write(p) }
func (g *gate) Read(p []byte) (int, error) {
	if g.wrote.Load() {
		<-g.open
	}
	return g.Conn.Read(p)
}

// The client's first application records, in the socket before the
// server reads the client's Finished, are left there by crypto/tls over a
// Raw and read by the switched server. Without Raw, crypto/tls swallows
// some of them (the control), which is why Raw exists.
func TestRawNoOverRead(t *testing.T) {
	data := randomBytes(3, 40<<10)
	run := func(t *testing.T, plain bool) []byte {
		g := &gate{open: make(chan struct{})}
		client, server := tlsPair(t, pairOpts{
			plain: plain,
			wrap:  func(c net.Conn) net.Conn { g.Conn = c; return g },
			afterClient: func(tc *tls.Conn) {
				_, err := tc.Write(data)
				if err == nil {
					err = tc.CloseWrite()
				}
				if err != nil {
					t.Error(err)
				}
				time.Sleep(10 * time.Millisecond) // let loopback deliver; only the control depends on it
				close(g.open)
			},
		})
		var s *Conn
		if plain {
			cSecret, sSecret := server.secrets.take()
			var err error
			s, err = newConn(g, server.tc.ConnectionState(), false, cSecret, sSecret)
			must(t, err)
		} else {
			s = server.switchTo(t, false)
		}
		_ = client
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(s)
		return got
	}
	if got := run(t, false); !bytes.Equal(got, data) {
		t.Fatalf("switched server read %d bytes, want the %d written", len(got), len(data))
	}
	if got := run(t, true); bytes.Equal(got, data) {
		t.Log("control: crypto/tls did not over-read this time")
	} else {
		t.Logf("control: without Raw the switched server read %d of %d bytes", len(got), len(data))
	}
}

// Raw.Read never returns bytes of two records, nor of a header and its body.
func TestRawRecordBoundary(t *testing.T) {
	var stream []byte
	var bounds []int // offsets where a header or a body ends
	for i, n := range []int{0, 1, 100, 16384, 5, 0, 300} {
		stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
		bounds = append(bounds, len(stream))
		stream = append(stream, randomBytes(uint64(i), n)...)
		bounds = append(bounds, len(stream))
	}
	r := NewRaw(&recorder{in: bytes.NewReader(stream)})
	if r.NetConn() == nil {
		t.Fatal("no NetConn")
	}
	var got []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := r.Read(buf)
		start := len(got)
		got = append(got, buf[:n]...)
		for _, b := range bounds {
			if start < b && b < len(got) {
				t.Fatalf("read [%d, %d) crosses the boundary at %d", start, len(got), b)
			}
		}
		if err == io.EOF {
			break
		}
		must(t, err)
	}
	if !bytes.Equal(got, stream) || !r.atBoundary() {
		t.Fatal("stream differs")
	}
}

// TestRawRelease: a released Raw reads across records, as the socket
// gives them.
func TestRawRelease(t *testing.T) {
	var stream []byte
	for i, n := range []int{10, 20, 30} {
		stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
		stream = append(stream, randomBytes(uint64(i), n)...)
	}
	r := NewRaw(&recorder{in: bytes.NewReader(stream)})
	head := make([]byte, 3)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	r.Release()
	buf := make([]byte, 1<<10)
	n, err := r.Read(buf)
	must(t, err)
	if n != len(stream)-3 || !bytes.Equal(append(head, buf[:n]...), stream) {
		t.Fatalf("released Raw read %d bytes, want the %d left in one read", n, len(stream)-3)
	}
}

func TestCapture(t *testing.T) {
	random := strings.Repeat("ab", 32)
	var c Capture
	for _, line := range []string{
		"# comment\n",
		"CLIENT_HANDSHAKE_TRAFFIC_SECRET " + random + " 0102\n",
		"CLIENT_TRAFFIC_SECRET_0 " + random + " 0a0b\n",
		"SERVER_TRAFFIC_SECRET_0 " + random, " 0c0d\n", // split over two writes
	} {
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatalf("write %q: %v", line, err)
		}
	}
	cl, sv := c.take()
	if !bytes.Equal(cl, []byte{10, 11}) || !bytes.Equal(sv, []byte{12, 13}) {
		t.Fatalf("secrets % x, % x", cl, sv)
	}
	if cl, sv := c.take(); cl != nil || sv != nil {
		t.Error("take did not forget the secrets")
	}
	for _, bad := range []string{
		"CLIENT_TRAFFIC_SECRET_0 " + random + "\n",
		"CLIENT_TRAFFIC_SECRET_0 zz 0a0b\n",
		"CLIENT_TRAFFIC_SECRET_0 " + random + " 0a0\n",
		"SERVER_TRAFFIC_SECRET_0 " + random + " xx\n",
		strings.Repeat("x", 600),
	} {
		if _, err := new(Capture).Write([]byte(bad)); err == nil {
			t.Errorf("write %q: no error", bad)
		}
	}
}

// What an authenticated record may hold, and what Read makes of it.
func TestInnerContent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte // sealed with typ appended
		typ     byte
		client  bool  // the reader is a client
		want    error // nil: Read returns read, then "ok" from the next record
		read    string
	}{
		{"user_canceled is ignored", []byte{1, alertUserCanceled}, typeAlert, true, nil, ""},
		{"other alert", []byte{2, 20}, typeAlert, true, tls.AlertError(20), ""},
		{"long alert", []byte{2, 20, 0}, typeAlert, true, ErrBadRecord, ""},
		{"all zero", []byte{0, 0}, 0, true, ErrBadRecord, ""},
		{"unknown type", []byte("x"), 24, true, ErrBadRecord, ""},
		{"empty data", nil, typeApplicationData, true, nil, ""},
		{"padded data", []byte("pad\x17\x00\x00"), 0, true, nil, "pad"},
		{"ticket to a client", []byte{hsNewSessionTicket, 0, 0, 1, 9}, typeHandshake, true, nil, ""},
		{"two tickets", []byte{hsNewSessionTicket, 0, 0, 0, hsNewSessionTicket, 0, 0, 0}, typeHandshake, true, nil, ""},
		{"ticket to a server", []byte{hsNewSessionTicket, 0, 0, 1, 9}, typeHandshake, false, ErrBadRecord, ""},
		{"fragmented message", []byte{hsNewSessionTicket, 0, 0, 9, 9}, typeHandshake, true, ErrBadRecord, ""},
		{"other handshake message", []byte{20, 0, 0, 0}, typeHandshake, true, ErrBadRecord, ""},
		{"KeyUpdate not last", []byte{hsKeyUpdate, 0, 0, 1, 0, hsNewSessionTicket, 0, 0, 0}, typeHandshake, true, ErrBadRecord, ""},
		{"KeyUpdate request 2", []byte{hsKeyUpdate, 0, 0, 1, 2}, typeHandshake, true, ErrBadRecord, ""},
		{"empty handshake", nil, typeHandshake, true, ErrBadRecord, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, rec := fixedConn(t, !tc.client, nil)
			rec.out.Write(w.out.seal(nil, tc.content, tc.typ))
			_, err := w.Write([]byte("ok"))
			must(t, err)
			r, _ := fixedConn(t, tc.client, &rec.out)
			buf := make([]byte, 100)
			n, err := r.Read(buf)
			if tc.want == nil {
				if err != nil || string(buf[:n]) != tc.read+"ok" {
					t.Fatalf("read %q, %v; want %q", buf[:n], err, tc.read+"ok")
				}
			} else if n != 0 || !errors.Is(err, tc.want) {
				t.Fatalf("read %d, %v; want 0, %v", n, err, tc.want)
			}
		})
	}
}

// A read timeout is a net.Error and leaves the Conn usable; a write
// error is sticky.
func TestDeadlines(t *testing.T) {
	a, b := conns(t, tls.TLS_AES_128_GCM_SHA256)
	must(t, b.SetReadDeadline(time.Now().Add(-time.Second)))
	_, err := b.Read(make([]byte, 10))
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read past deadline: %v, want a net.Error timeout", err)
	}
	must(t, b.SetReadDeadline(time.Time{}))
	transfer(t, 100<<10, 1<<10, a.Write, a.CloseWrite, b)

	must(t, b.SetWriteDeadline(time.Now().Add(-time.Second)))
	_, err1 := b.Write([]byte("x"))
	must(t, b.SetWriteDeadline(time.Time{}))
	_, err2 := b.Write([]byte("x"))
	if err1 == nil || err2 != err1 {
		t.Fatalf("writes after a timeout: %v, then %v; want the same error", err1, err2)
	}
}

// TestCaptureForget: Forget drops both secrets, and a Switch after it
// fails as one without secrets does.
func TestCaptureForget(t *testing.T) {
	random := strings.Repeat("ab", 32)
	var c Capture
	for _, line := range []string{"CLIENT_TRAFFIC_SECRET_0 " + random + " 0a0b\n", "SERVER_TRAFFIC_SECRET_0 " + random + " 0c0d\n"} {
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	c.Forget()
	if cl, sv := c.take(); cl != nil || sv != nil {
		t.Fatalf("secrets kept after Forget: %x, %x", cl, sv)
	}
}
