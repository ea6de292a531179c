package wire

import (
	"errors"
	"fmt"
	"io"
)

// ErrBadClientHello is wrapped by every failure to read a TLS ClientHello
// on the passthrough port, except a connection that ends or times out.
var ErrBadClientHello = errors.New("bad TLS ClientHello")

// Limits of what the passthrough listener reads before it routes. A
// ClientHello is one handshake message, possibly split over several
// records; nothing after the record that completes it is read.
const (
	recordHeaderLen = 5
	// maxRecordLen is the largest TLSPlaintext fragment (RFC 8446 5.1).
	maxRecordLen = 1 << 14
	// maxClientHello bounds the handshake bytes read: the ClientHello
	// with its 4-byte handshake header.
	maxClientHello = 16 << 10
	// maxHelloRecords bounds how many records the ClientHello may span.
	maxHelloRecords = 16
	// maxHelloRead bounds every byte read before routing.
	maxHelloRead = maxClientHello + maxHelloRecords*recordHeaderLen

	recordTypeHandshake      = 22
	handshakeTypeClientHello = 1
	extensionServerName      = 0
	serverNameTypeHostName   = 0
)

// ClientHello is what the passthrough listener read from a client.
type ClientHello struct {
	// Raw is every byte read from the client, record headers included,
	// to be written upstream unchanged.
	Raw []byte
	// ServerName is the SNI host name, "" when the client sent none.
	ServerName string
}

// ReadClientHello reads the TLS records that carry the client's
// ClientHello, and no byte more, without answering anything. It reads at
// most maxHelloRead bytes.
func ReadClientHello(r io.Reader) (*ClientHello, error) {
	raw := make([]byte, 0, 512)
	var msg []byte // handshake bytes so far
	for records := 0; ; records++ {
		if records == maxHelloRecords {
			return nil, fmt.Errorf("%w: not complete after %d records", ErrBadClientHello, maxHelloRecords)
		}
		start := len(raw)
		raw = append(raw, make([]byte, recordHeaderLen)...)
		if n, err := io.ReadFull(r, raw[start:]); err != nil {
			return nil, readHelloErr(len(raw)-recordHeaderLen+n, "record header", err)
		}
		hdr := raw[start:]
		typ, major, minor, n := hdr[0], hdr[1], hdr[2], int(hdr[3])<<8|int(hdr[4])
		switch {
		case typ != recordTypeHandshake && records == 0:
			return nil, fmt.Errorf("%w: not a TLS handshake (first bytes %q)", ErrBadClientHello, printable(hdr))
		case typ != recordTypeHandshake:
			return nil, fmt.Errorf("%w: record of type %d inside the ClientHello", ErrBadClientHello, typ)
		case major != 3 || minor > 4:
			return nil, fmt.Errorf("%w: record version %d.%d is not TLS", ErrBadClientHello, major, minor)
		case n == 0:
			return nil, fmt.Errorf("%w: empty handshake record", ErrBadClientHello)
		case n > maxRecordLen:
			return nil, fmt.Errorf("%w: record of %d bytes, more than %d", ErrBadClientHello, n, maxRecordLen)
		case len(msg)+n > maxClientHello:
			return nil, fmt.Errorf("%w: more than %d bytes", ErrBadClientHello, maxClientHello)
		}
		start = len(raw)
		raw = append(raw, make([]byte, n)...)
		if got, err := io.ReadFull(r, raw[start:]); err != nil {
			return nil, readHelloErr(start+got, "record", err)
		}
		msg = append(msg, raw[start:]...)
		if msg[0] != handshakeTypeClientHello {
			return nil, fmt.Errorf("%w: handshake message of type %d, not a ClientHello", ErrBadClientHello, msg[0])
		}
		if len(msg) < 4 {
			continue
		}
		size := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if size > maxClientHello {
			return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadClientHello, size, maxClientHello)
		}
		if len(msg) < size {
			continue
		}
		name, err := parseClientHello(msg[4:size])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadClientHello, err)
		}
		return &ClientHello{Raw: raw, ServerName: name}, nil
	}
}

// readHelloErr describes a read that ended early; read is the number of
// bytes received so far.
func readHelloErr(read int, what string, err error) error {
	switch {
	case read == 0 && errors.Is(err, io.EOF):
		return fmt.Errorf("connection closed before a ClientHello: %w", err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("connection closed inside the ClientHello %s after %d bytes: %w", what, read, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read ClientHello %s after %d bytes: %w", what, read, err)
}

func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}

// parseClientHello returns the host name of the server_name extension of
// a ClientHello body (RFC 8446 4.1.2, RFC 6066 3), or "" when it has none.
// It checks the structure the way crypto/tls does: every length within
// its parent, no trailing bytes, no repeated extension, at most one host
// name, and no trailing dot.
func parseClientHello(b []byte) (string, error) {
	s := helloBytes(b)
	if !s.skip(2 + 32) {
		return "", errors.New("truncated before the session id")
	}
	if sid, ok := s.vec8(); !ok || len(sid) > 32 {
		return "", errors.New("bad session id")
	}
	if suites, ok := s.vec16(); !ok || len(suites) < 2 || len(suites)%2 != 0 {
		return "", errors.New("bad cipher suite list")
	}
	if methods, ok := s.vec8(); !ok || len(methods) == 0 {
		return "", errors.New("bad compression method list")
	}
	if len(s) == 0 {
		return "", nil // no extensions
	}
	exts, ok := s.vec16()
	if !ok || len(s) != 0 {
		return "", errors.New("bad extension block")
	}
	seen := make(map[uint16]bool, 16)
	var name string
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return "", errors.New("truncated extension")
		}
		if seen[typ] {
			return "", fmt.Errorf("extension %d repeated", typ)
		}
		seen[typ] = true
		if typ != extensionServerName {
			continue
		}
		var err error
		if name, err = parseServerName(data); err != nil {
			return "", err
		}
	}
	return name, nil
}

func parseServerName(data helloBytes) (string, error) {
	list, ok := data.vec16()
	if !ok || len(data) != 0 || len(list) == 0 {
		return "", errors.New("bad server_name extension")
	}
	var name string
	for len(list) > 0 {
		typ, ok1 := list.u8()
		n, ok2 := list.vec16()
		if !ok1 || !ok2 || len(n) == 0 {
			return "", errors.New("bad server_name entry")
		}
		if typ != serverNameTypeHostName {
			continue
		}
		if name != "" {
			return "", errors.New("more than one host name in server_name")
		}
		for _, c := range n {
			if c <= 0x20 || c >= 0x7f {
				return "", fmt.Errorf("server name %q is not an ASCII host name", printable(n))
			}
		}
		if n[len(n)-1] == '.' {
			return "", fmt.Errorf("server name %q ends with a dot", n)
		}
		name = string(n)
	}
	return name, nil
}

// helloBytes reads big-endian integers and length-prefixed vectors.
type helloBytes []byte

func (s *helloBytes) skip(n int) bool {
	if len(*s) < n {
		return false
	}
	*s = (*s)[n:]
	return true
}

func (s *helloBytes) u8() (byte, bool) {
	if len(*s) < 1 {
		return 0, false
	}
	v := (*s)[0]
	*s = (*s)[1:]
	return v, true
}

func (s *helloBytes) u16() (uint16, bool) {
	if len(*s) < 2 {
		return 0, false
	}
	v := uint16((*s)[0])<<8 | uint16((*s)[1])
	*s = (*s)[2:]
	return v, true
}

func (s *helloBytes) vec(n int) (helloBytes, bool) {
	if len(*s) < n {
		return nil, false
	}
	v := (*s)[:n:n]
	*s = (*s)[n:]
	return v, true
}

func (s *helloBytes) vec8() (helloBytes, bool) {
	n, ok := s.u8()
	if !ok {
		return nil, false
	}
	return s.vec(int(n))
}

func (s *helloBytes) vec16() (helloBytes, bool) {
	n, ok := s.u16()
	if !ok {
		return nil, false
	}
	return s.vec(int(n))
}
