package wire

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// captureConn records what a TLS client writes and ends every read, so a
// handshake stops right after the ClientHello.
type captureConn struct {
	out bytes.Buffer
}

func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// cryptoHello returns the ClientHello records crypto/tls sends with cfg.
func cryptoHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	var cc captureConn
	if err := tls.Client(&cc, cfg).Handshake(); err == nil {
		t.Fatal("handshake against a closed capture succeeded")
	}
	if cc.out.Len() == 0 {
		t.Fatal("crypto/tls wrote no ClientHello")
	}
	return cc.out.Bytes()
}

// replayConn feeds recorded bytes to a TLS server and swallows whatever
// it answers.
type replayConn struct {
	captureConn
	in *bytes.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.in.Read(p) }

var errStopHandshake = errors.New("stop after the ClientHello")

// cryptoServerName is crypto/tls's reading of the server name in hello:
// ok is false when crypto/tls did not accept the ClientHello.
func cryptoServerName(hello []byte) (name string, ok bool) {
	conn := &replayConn{in: bytes.NewReader(hello)}
	_ = tls.Server(conn, &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		name, ok = chi.ServerName, true
		return nil, errStopHandshake
	}}).Handshake()
	return name, ok
}

// reframe cuts the handshake bytes of hello's records into records of at
// most size bytes each.
func reframe(t testing.TB, hello []byte, size int) []byte {
	t.Helper()
	var msg []byte
	for rest := hello; len(rest) > 0; {
		if len(rest) < recordHeaderLen {
			t.Fatalf("truncated record header")
		}
		n := int(rest[3])<<8 | int(rest[4])
		msg = append(msg, rest[recordHeaderLen:recordHeaderLen+n]...)
		rest = rest[recordHeaderLen+n:]
	}
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestReadClientHelloFromCryptoTLS(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".svc.cluster.local"
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"istio sni tls13", &tls.Config{ServerName: "outbound_.8443_._.ledger.demo.svc.cluster.local"}, "outbound_.8443_._.ledger.demo.svc.cluster.local"},
		{"tls12 only", &tls.Config{ServerName: "outbound_.80_._.a.b.svc.clusterset.local", MaxVersion: tls.VersionTLS12}, "outbound_.80_._.a.b.svc.clusterset.local"},
		{"with alpn", &tls.Config{ServerName: "example.com", NextProtos: []string{"h2", "http/1.1", "istio-peer-exchange"}}, "example.com"},
		{"long name", &tls.Config{ServerName: long}, long},
		{"no sni", &tls.Config{InsecureSkipVerify: true}, ""},
		{"ip address sends no sni", &tls.Config{ServerName: "10.0.0.1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hello := cryptoHello(t, tc.cfg)
			if got, ok := cryptoServerName(hello); !ok || got != tc.want {
				t.Fatalf("crypto/tls reads server name %q (ok %v), want %q", got, ok, tc.want)
			}
			for _, input := range []struct {
				name    string
				raw     []byte
				records int
			}{
				{"one record", hello, 1},
				{"three records", reframe(t, hello, (len(hello)-recordHeaderLen+2)/3), 3},
				{"sixteen records", reframe(t, hello, (len(hello)-recordHeaderLen+15)/16), 16},
				{"seventeen records", reframe(t, hello, (len(hello)-recordHeaderLen+16)/17), 17},
			} {
				if n := (len(input.raw) - len(hello)) / recordHeaderLen; n != input.records-1 {
					t.Fatalf("%s: %d records", input.name, n+1)
				}
				// Bytes after the ClientHello are not read: they go upstream later.
				r := bytes.NewReader(append(append([]byte(nil), input.raw...), "early data"...))
				h, err := ReadClientHello(r)
				if input.records > maxHelloRecords {
					if !errors.Is(err, ErrBadClientHello) || !strings.Contains(err.Error(), "not complete after 16 records") {
						t.Errorf("%s: %v, want the record limit", input.name, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", input.name, err)
				}
				if h.ServerName != tc.want {
					t.Errorf("%s: server name %q, want %q", input.name, h.ServerName, tc.want)
				}
				if !bytes.Equal(h.Raw, input.raw) {
					t.Errorf("%s: raw is %d bytes, want the %d bytes of the ClientHello records", input.name, len(h.Raw), len(input.raw))
				}
				if r.Len() != len("early data") {
					t.Errorf("%s: read %d bytes past the ClientHello", input.name, len("early data")-r.Len())
				}
				if got, ok := cryptoServerName(input.raw); !ok || got != tc.want {
					t.Errorf("%s: crypto/tls reads %q (ok %v) from the same bytes", input.name, got, ok)
				}
			}
		})
	}
}

// helloBody builds a ClientHello body with the given extensions.
func helloBody(exts ...[]byte) []byte {
	b := []byte{3, 3}
	b = append(b, make([]byte, 32)...)
	b = append(b, 0)                // session id
	b = append(b, 0, 2, 0x13, 0x01) // cipher suites
	b = append(b, 1, 0)             // compression methods
	var e []byte
	for _, x := range exts {
		e = append(e, x...)
	}
	b = append(b, byte(len(e)>>8), byte(len(e)))
	return append(b, e...)
}

func ext(typ uint16, data []byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
}

// sniExt is a server_name extension with one entry per name, host_name
// entries unless the name starts with "\x01" (another name type).
func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		typ := byte(serverNameTypeHostName)
		if rest, ok := strings.CutPrefix(n, "\x01"); ok {
			typ, n = 1, rest
		}
		list = append(list, typ, byte(len(n)>>8), byte(len(n)))
		list = append(list, n...)
	}
	return ext(extensionServerName, append([]byte{byte(len(list) >> 8), byte(len(list))}, list...))
}

// handshakeRecord wraps a ClientHello body in its handshake and record headers.
func handshakeRecord(body []byte) []byte {
	msg := append([]byte{handshakeTypeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{recordTypeHandshake, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func TestReadClientHelloBuilt(t *testing.T) {
	ok := []struct {
		name string
		body []byte
		want string
	}{
		{"one name", helloBody(sniExt("outbound_.80_._.a.b.svc.cluster.local")), "outbound_.80_._.a.b.svc.cluster.local"},
		{"other name types are skipped", helloBody(sniExt("\x01opaque", "a.example")), "a.example"},
		{"no extensions at all", helloBody()[:2+32+1+4+2], ""},
		{"other extensions only", helloBody(ext(16, []byte{0, 3, 2, 'h', '2'})), ""},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			raw := handshakeRecord(tc.body)
			h, err := ReadClientHello(bytes.NewReader(raw))
			if err != nil || h.ServerName != tc.want {
				t.Fatalf("readClientHello = %+v, %v; want %q", h, err, tc.want)
			}
			if got, ok := cryptoServerName(raw); ok && got != tc.want {
				t.Errorf("crypto/tls reads %q", got)
			}
		})
	}

	bad := []struct {
		name string
		body []byte
		want string
	}{
		{"two host names", helloBody(sniExt("a.example", "b.example")), "more than one host name"},
		{"trailing dot", helloBody(sniExt("a.example.")), "ends with a dot"},
		{"empty name", helloBody(sniExt("")), "bad server_name entry"},
		{"control byte in name", helloBody(sniExt("a\x00b")), "not an ASCII host name"},
		{"space in name", helloBody(sniExt("a b")), "not an ASCII host name"},
		{"empty name list", helloBody(ext(extensionServerName, []byte{0, 0})), "bad server_name extension"},
		{"repeated extension", helloBody(sniExt("a.example"), sniExt("b.example")), "extension 0 repeated"},
		{"truncated extension", append(helloBody()[:2+32+1+4+2], 0, 3, 0, 0, 0), "truncated extension"},
		{"bytes after the extensions", append(helloBody(sniExt("a.example")), 0), "bad extension block"},
		{"extension longer than the block", func() []byte {
			b := helloBody(sniExt("a.example"))
			b[len(b)-len(sniExt("a.example"))+3]++ // the extension's own length
			return b
		}(), "truncated extension"},
		{"session id of 33 bytes", func() []byte {
			b := append([]byte{3, 3}, make([]byte, 32)...)
			b = append(b, 33)
			b = append(b, make([]byte, 33)...)
			return append(b, 0, 2, 0x13, 0x01, 1, 0)
		}(), "bad session id"},
		{"odd cipher suite list", func() []byte {
			b := append([]byte{3, 3}, make([]byte, 32)...)
			return append(b, 0, 0, 3, 0x13, 0x01, 0x13, 1, 0)
		}(), "bad cipher suite list"},
		{"no compression methods", func() []byte {
			b := append([]byte{3, 3}, make([]byte, 32)...)
			return append(b, 0, 0, 2, 0x13, 0x01, 0)
		}(), "bad compression method list"},
		{"short body", []byte{3, 3, 0}, "truncated before the session id"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ReadClientHello(bytes.NewReader(handshakeRecord(tc.body)))
			if !errors.Is(err, ErrBadClientHello) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("readClientHello = %+v, %v; want ErrBadClientHello with %q", h, err, tc.want)
			}
		})
	}
}

func TestReadClientHelloRecordErrors(t *testing.T) {
	hello := handshakeRecord(helloBody(sniExt("outbound_.80_._.a.b.svc.cluster.local")))
	interleaved := reframe(t, hello, 20)
	interleaved = append(append(append([]byte(nil), interleaved[:25]...), 20, 3, 3, 0, 1, 1), interleaved[25:]...) // a ChangeCipherSpec between fragments
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"plain http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), `not a TLS handshake (first bytes "GET /")`},
		{"alert record", []byte{21, 3, 1, 0, 2, 2, 40}, "not a TLS handshake"},
		{"sslv2 hello", []byte{0x80, 0x2e, 1, 3, 1, 0}, "not a TLS handshake"},
		{"record version", []byte{22, 2, 0, 0, 4, 1, 0, 0, 0}, "record version 2.0 is not TLS"},
		{"record version from the future", []byte{22, 3, 9, 0, 4, 1, 0, 0, 0}, "record version 3.9 is not TLS"},
		{"empty record", []byte{22, 3, 1, 0, 0}, "empty handshake record"},
		{"record too long", []byte{22, 3, 1, 0x40, 0x01}, "record of 16385 bytes"},
		{"server hello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, "handshake message of type 2, not a ClientHello"},
		{"hello too large", []byte{22, 3, 1, 0, 4, 1, 0, 0x40, 0x00}, "16388 bytes, more than 16384"},
		{"record inside the hello", interleaved, "record of type 20 inside the ClientHello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ReadClientHello(bytes.NewReader(tc.in))
			if !errors.Is(err, ErrBadClientHello) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("readClientHello = %+v, %v; want ErrBadClientHello with %q", h, err, tc.want)
			}
		})
	}

	t.Run("closed before a byte", func(t *testing.T) {
		_, err := ReadClientHello(bytes.NewReader(nil))
		if !errors.Is(err, io.EOF) || errors.Is(err, ErrBadClientHello) || !strings.Contains(err.Error(), "closed before a ClientHello") {
			t.Fatalf("err %v", err)
		}
	})
	for _, cut := range []int{3, recordHeaderLen, recordHeaderLen + 10, len(hello) - 1} {
		_, err := ReadClientHello(bytes.NewReader(hello[:cut]))
		if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrBadClientHello) {
			t.Errorf("cut after %d bytes: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
	t.Run("timeout", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go b.Write(hello[:10])
		a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := ReadClientHello(a)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "after 10 bytes") {
			t.Fatalf("err %v", err)
		}
	})
}

// countingReader counts what is read from r.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// endless repeats a record forever.
type endless struct {
	rec []byte
	off int
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.rec[e.off:])
	e.off = (e.off + n) % len(e.rec)
	return n, nil
}

func TestReadClientHelloLimits(t *testing.T) {
	// A ClientHello that says it is as large as allowed, sent in small
	// records that never complete it.
	first := append([]byte{22, 3, 1, 0, 8, 1, 0, 0x3f, 0xfc}, 0, 0, 0, 0)
	small := append([]byte{22, 3, 1, 0, 100}, make([]byte, 100)...)
	for _, tc := range []struct {
		name string
		r    io.Reader
		want string
	}{
		{"too many records", io.MultiReader(bytes.NewReader(first), &endless{rec: small}), "not complete after 16 records"},
		{"one byte per record", io.MultiReader(bytes.NewReader([]byte{22, 3, 1, 0, 4, 1, 0, 0x3f, 0xfc}), &endless{rec: []byte{22, 3, 1, 0, 1, 0}}), "not complete after 16 records"},
		{"one full record", io.MultiReader(bytes.NewReader([]byte{22, 3, 1, 0x40, 0, 1, 0, 0x3f, 0xfc}), &endless{rec: []byte{0}}), "bad cipher suite list"},
		{"full records past the limit", &endless{rec: append([]byte{22, 3, 1, 0x40, 0, 1, 0, 0x40, 0}, make([]byte, 0x4000-4)...)}, "more than 16384"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := &countingReader{r: tc.r}
			_, err := ReadClientHello(cr)
			if !errors.Is(err, ErrBadClientHello) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if cr.n > maxHelloRead {
				t.Fatalf("read %d bytes, more than %d", cr.n, maxHelloRead)
			}
		})
	}
	// The largest ClientHello allowed, split over the most records allowed.
	body := helloBody(sniExt("a.example"), ext(21, make([]byte, maxClientHello-4-len(helloBody(sniExt("a.example")))-4)))
	raw := reframe(t, handshakeRecord(body), maxClientHello/maxHelloRecords)
	h, err := ReadClientHello(bytes.NewReader(raw))
	if err != nil || h.ServerName != "a.example" || len(h.Raw) != len(raw) || len(raw) > maxHelloRead {
		t.Fatalf("largest ClientHello (%d bytes in %d records): %v", len(raw), maxHelloRecords, err)
	}
	if name, ok := cryptoServerName(raw); !ok || name != "a.example" {
		t.Errorf("crypto/tls reads %q (ok %v)", name, ok)
	}
}

// FuzzReadClientHello checks that reading never panics, never reads more
// than the limit, returns exactly the bytes it consumed, and agrees with
// crypto/tls on the server name whenever both accept the ClientHello.
func FuzzReadClientHello(f *testing.F) {
	// Small key shares keep the seeds short, which keeps minimizing fast.
	x25519 := []tls.CurveID{tls.X25519}
	for _, cfg := range []*tls.Config{
		{ServerName: "outbound_.8443_._.ledger.demo.svc.cluster.local", CurvePreferences: x25519},
		{ServerName: "a.example", MaxVersion: tls.VersionTLS12, NextProtos: []string{"h2"}, CurvePreferences: x25519},
		{InsecureSkipVerify: true, CurvePreferences: x25519},
	} {
		hello := cryptoHello(f, cfg)
		f.Add(hello)
		f.Add(reframe(f, hello, 100))
	}
	f.Add(handshakeRecord(helloBody(sniExt("\x01x", "a.b"))))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		h, err := ReadClientHello(cr)
		if cr.n > maxHelloRead {
			t.Fatalf("read %d bytes, more than %d", cr.n, maxHelloRead)
		}
		if err != nil {
			if !errors.Is(err, ErrBadClientHello) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(h.Raw) != cr.n || !bytes.Equal(h.Raw, data[:cr.n]) {
			t.Fatalf("raw (%d bytes) is not what was read (%d bytes)", len(h.Raw), cr.n)
		}
		if name, ok := cryptoServerName(h.Raw); ok && name != h.ServerName {
			t.Fatalf("server name %q, crypto/tls reads %q", h.ServerName, name)
		}
	})
}
