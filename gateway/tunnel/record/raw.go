package record

import (
	"encoding/binary"
	"net"
)

// Raw is the net.Conn to put beneath tls.Client or tls.Server when the
// connection is to be switched to a Conn after the handshake. Its Read
// never returns a byte past the end of the TLS record being read (at most
// the rest of the 5-byte header, then at most the rest of the body), so
// crypto/tls, which reads whole records, has buffered nothing of a later
// record when Handshake returns: the peer's first application records are
// still in the socket for Conn (TestRawNoOverRead, TestRawRecordBoundary).
// Writes go straight through. Raw is read by one goroutine at a time, as
// crypto/tls does.
type Raw struct {
	net.Conn
	hdr  [headerLen]byte
	hn   int // header bytes read of the current record
	body int // body bytes still to read of the current record
	free bool
}

// NewRaw wraps c.
func NewRaw(c net.Conn) *Raw { return &Raw{Conn: c} }

// NetConn returns the wrapped connection.
func (r *Raw) NetConn() net.Conn { return r.Conn }

// Release makes every later Read go straight to the connection, for a
// connection that stays with crypto/tls after its handshake. Call it
// from the goroutine that reads, or before another starts to.
func (r *Raw) Release() { r.free = true }

// Read reads at most to the end of the current record header or body.
func (r *Raw) Read(p []byte) (int, error) {
	if r.free {
		return r.Conn.Read(p)
	}
	if r.body > 0 {
		n, err := r.Conn.Read(p[:min(len(p), r.body)])
		r.body -= n
		return n, err
	}
	n, err := r.Conn.Read(p[:min(len(p), headerLen-r.hn)])
	r.hn += copy(r.hdr[r.hn:], p[:n])
	if r.hn == headerLen {
		r.hn, r.body = 0, int(binary.BigEndian.Uint16(r.hdr[3:]))
	}
	return n, err
}

// atBoundary reports whether everything read so far ends a record.
func (r *Raw) atBoundary() bool { return r.hn == 0 && r.body == 0 }
