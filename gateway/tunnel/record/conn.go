package record

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrUnsupported is wrapped by Switch's errors when the connection
	// cannot be taken over (not TLS 1.3, another cipher suite, no secrets
	// captured); the caller keeps using the *tls.Conn.
	ErrUnsupported = errors.New("not supported by the record layer")
	// ErrBadRecord is wrapped by Read's errors when the peer sent what is
	// not a valid record: malformed, unauthenticated, or of a type not
	// allowed after the handshake. The connection is then unusable.
	ErrBadRecord = errors.New("bad record")

	errShutdown   = errors.New("tls record: write after close_notify")
	errFragmented = fmt.Errorf("tls record: handshake message continues in the next record, which is not supported: %w", ErrBadRecord)
)

const (
	defaultKeyLimit    = 1 << 24   // records sealed with one key before a KeyUpdate
	batchLen           = 256 << 10 // plaintext written per write(2)
	outCap             = (batchLen/maxPlaintext+1)*maxRecord + 64
	readBufLen         = 256 << 10
	closeNotifyTimeout = time.Second
)

var (
	_ net.Conn = (*Conn)(nil)
	_ net.Conn = (*Raw)(nil)
)

// outPool holds write buffers, taken for one Write call only.
var outPool = sync.Pool{New: func() any { b := make([]byte, 0, outCap); return &b }}

// Conn is a TLS 1.3 connection whose records this package protects
// itself, after crypto/tls made the handshake. See the package doc.
type Conn struct {
	conn         net.Conn
	state        tls.ConnectionState
	isClient     bool
	closed       atomic.Bool
	updateWanted atomic.Bool // the peer sent KeyUpdate with request_update 1

	wmu        sync.Mutex
	out        direction
	werr       error  // sticky: every later write fails with it
	keyLimit   uint64 // records per write key; tests lower it
	notifySent bool

	rmu   sync.Mutex
	in    direction
	rerr  error  // sticky, io.EOF after close_notify
	rbuf  []byte // received bytes are rbuf[rs:re]
	rs    int
	re    int
	plain []byte // opened application data not yet returned, inside rbuf
}

// Switch takes over tc's connection right after a successful handshake.
// raw must be the connection tc was made over and secrets its
// KeyLogWriter (of this connection alone); isClient says which side we
// are. Preconditions, which Switch cannot check: no application record
// has been sent or received by tc (do not Read or Write tc before), and a
// server's tls.Config has SessionTicketsDisabled: true, since otherwise
// crypto/tls sends NewSessionTicket records with the application key
// inside Handshake. Switch fails with an error wrapping ErrUnsupported,
// leaving tc usable, if the connection is not TLS 1.3 with
// TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or
// TLS_CHACHA20_POLY1305_SHA256. After Switch, use only the Conn.
func Switch(tc *tls.Conn, raw *Raw, secrets *Capture, isClient bool) (*Conn, error) {
	st := tc.ConnectionState()
	switch {
	case !st.HandshakeComplete:
		return nil, fmt.Errorf("tls record: switch before the handshake completed: %w", ErrUnsupported)
	case st.Version != tls.VersionTLS13:
		return nil, fmt.Errorf("tls record: switch %s: %w", tls.VersionName(st.Version), ErrUnsupported)
	case tc.NetConn() != raw:
		return nil, fmt.Errorf("tls record: switch: the tls.Conn is not over the given Raw: %w", ErrUnsupported)
	case !raw.atBoundary():
		return nil, fmt.Errorf("tls record: switch: the handshake stopped inside a record: %w", ErrUnsupported)
	}
	client, server := secrets.take()
	if client == nil || server == nil {
		return nil, fmt.Errorf("tls record: switch: no %s and %s captured (is the Capture the connection's KeyLogWriter?): %w",
			labelClientTraffic, labelServerTraffic, ErrUnsupported)
	}
	read, write := server, client
	if !isClient {
		read, write = client, server
	}
	return newConn(raw.NetConn(), st, isClient, read, write)
}

// newConn protects conn with the suite of state and the given secrets.
func newConn(conn net.Conn, state tls.ConnectionState, isClient bool, readSecret, writeSecret []byte) (*Conn, error) {
	s, err := suiteFor(state.CipherSuite)
	if err != nil {
		return nil, err
	}
	c := &Conn{conn: conn, state: state, isClient: isClient, keyLimit: defaultKeyLimit}
	if err := c.in.setSecret(s, readSecret); err != nil {
		return nil, fmt.Errorf("tls record: read key: %w", err)
	}
	if err := c.out.setSecret(s, writeSecret); err != nil {
		return nil, fmt.Errorf("tls record: write key: %w", err)
	}
	return c, nil
}

// Write seals p into records of at most 16 KiB and writes them, about
// 256 KiB per write(2). It copies p once, into the record buffer; p is
// not modified.
func (c *Conn) Write(p []byte) (int, error) { return c.write([][]byte{p}, false) }

// WriteOwned writes like Write but seals straight from p, without copying
// it: while the call lasts it may change, and then restores, the byte
// after each record's chunk, including p[len(p)] when cap(p) > len(p). Use
// it only when no one else reads p[:cap(p)] during the call.
func (c *Conn) WriteOwned(p []byte) (int, error) { return c.write([][]byte{p}, true) }

// WriteFrames writes each of frames like WriteOwned, all of them in as
// few write(2) calls as the record buffer allows (one for up to 256 KiB):
// the frames a multiplexer queued together reach the peer together.
func (c *Conn) WriteFrames(frames [][]byte) (int, error) { return c.write(frames, true) }

// write seals frames into records and writes them, a write(2) each time
// the record buffer fills and once at the end. It returns the bytes of
// frames whose records were written.
func (c *Conn) write(frames [][]byte, owned bool) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	bp := outPool.Get().(*[]byte)
	defer outPool.Put(bp)
	out := (*bp)[:0]
	var err error
	if c.updateWanted.Swap(false) {
		out, err = c.appendKeyUpdate(out, false)
	}
	n, flushed := 0, 0 // bytes of frames sealed; of those, written
	for _, p := range frames {
		for m := 0; err == nil && m < len(p); {
			if len(out)+2*maxRecord > cap(out) {
				if _, err = c.conn.Write(out); err != nil {
					break
				}
				out, flushed = out[:0], n
			}
			if c.out.seq+1 >= c.keyLimit {
				if out, err = c.appendKeyUpdate(out, false); err != nil {
					break
				}
			}
			end := min(len(p), m+maxPlaintext)
			out = c.appendData(out, p, m, end, owned)
			n += end - m
			m = end
		}
	}
	if err == nil && len(out) > 0 {
		if _, err = c.conn.Write(out); err == nil {
			flushed = n
		}
	}
	if err != nil {
		c.werr = err // as the socket said it, so that net.Error works
	}
	return flushed, err
}

// appendData appends the record of p[start:end].
func (c *Conn) appendData(out, p []byte, start, end int, owned bool) []byte {
	if !owned || (end == len(p) && cap(p) == len(p)) {
		return c.out.seal(out, p[start:end], typeApplicationData)
	}
	inner := p[start : end+1] // the chunk and the byte after it, borrowed for the type
	saved := inner[len(inner)-1]
	inner[len(inner)-1] = typeApplicationData
	out = c.out.sealInner(out, inner)
	inner[len(inner)-1] = saved
	return out
}

// appendKeyUpdate appends a KeyUpdate record and moves to the next write key.
func (c *Conn) appendKeyUpdate(out []byte, request bool) ([]byte, error) {
	msg := [5]byte{hsKeyUpdate, 0, 0, 1, 0}
	if request {
		msg[4] = 1
	}
	out = c.out.seal(out, msg[:], typeHandshake)
	if err := c.out.update(); err != nil {
		return out, fmt.Errorf("tls record: key update: %w", err)
	}
	return out, nil
}

// sendKeyUpdate sends a KeyUpdate now (a test hook for request_update 1).
func (c *Conn) sendKeyUpdate(request bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	out, err := c.appendKeyUpdate(nil, request)
	if err == nil {
		_, err = c.conn.Write(out)
	}
	if err != nil {
		c.werr = err
	}
	return err
}

// closeNotifyLocked sends close_notify once; later writes fail.
func (c *Conn) closeNotifyLocked() error {
	if c.notifySent {
		return nil
	}
	if c.werr != nil {
		return c.werr
	}
	c.notifySent = true
	c.werr = errShutdown
	out := c.out.seal(make([]byte, 0, 32), []byte{1, alertCloseNotify}, typeAlert)
	if _, err := c.conn.Write(out); err != nil {
		c.werr = err
		return fmt.Errorf("tls record: send close_notify: %w", err)
	}
	return nil
}

// CloseWrite sends close_notify and shuts down the writing side of the
// socket if it can. Later writes fail.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	err := c.closeNotifyLocked()
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("tls record: close write: %w", err)
		}
	}
	return nil
}

// Close sends close_notify, best effort within a second, and closes the
// socket. If a Write is in flight, Close is taken to be breaking it and
// sends no alert, as crypto/tls does.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return fmt.Errorf("tls record: close: %w", net.ErrClosed)
	}
	var notifyErr error
	if c.wmu.TryLock() {
		_ = c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
		notifyErr = c.closeNotifyLocked()
		c.wmu.Unlock()
	}
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("tls record: close: %w", err)
	}
	return notifyErr
}

// Read returns application data. One read(2) takes up to 256 KiB of
// records. A record whose plaintext fits in what is left of p is opened
// straight into p; others are opened in place in the receive buffer and
// copied out. Errors of the socket come back as it returned them (so
// that net.Error timeouts work), and a timeout is not sticky; every other
// error is, and io.EOF follows close_notify, or the peer closing the
// socket between records, as with crypto/tls.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n := 0
	for n < len(p) {
		if len(c.plain) > 0 {
			m := copy(p[n:], c.plain)
			c.plain = c.plain[m:]
			n += m
			continue
		}
		if n > 0 && !c.recordBuffered() {
			break // never block once there is something to return
		}
		m, err := c.readRecord(p[n:])
		n += m
		if err != nil {
			if n > 0 {
				break // a sticky error waits for the next call
			}
			return 0, err
		}
	}
	return n, nil
}

// fail makes err sticky unless it is a timeout of the socket.
func (c *Conn) fail(err error) error {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return err
	}
	c.rerr = err
	return err
}

// recordBuffered reports whether a whole record is in the receive buffer.
func (c *Conn) recordBuffered() bool {
	have := c.re - c.rs
	return have >= headerLen && have >= headerLen+int(binary.BigEndian.Uint16(c.rbuf[c.rs+3:]))
}

// readRecord consumes one record. Application data is opened into dst if
// it fits, and its length returned, or else left in c.plain.
func (c *Conn) readRecord(dst []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	hdr, body, err := c.next()
	if err != nil {
		return 0, c.fail(err)
	}
	seq := c.in.seq
	nonce := c.in.nextNonce()
	direct := len(dst) >= len(body)-tagLen
	var plain []byte
	if direct {
		plain, err = c.in.aead.Open(dst[:0], nonce, body, hdr)
	} else {
		plain, err = c.in.aead.Open(body[:0], nonce, body, hdr)
	}
	if err != nil {
		return 0, c.fail(fmt.Errorf("tls record: open record %d: %w: %w", seq, ErrBadRecord, err))
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, c.fail(fmt.Errorf("tls record: record %d has no content type: %w", seq, ErrBadRecord))
	}
	typ, content := plain[i], plain[:i]
	if len(content) > maxPlaintext {
		return 0, c.fail(fmt.Errorf("tls record: record %d holds %d bytes: %w", seq, len(content), ErrBadRecord))
	}
	switch typ {
	case typeApplicationData:
		if direct {
			return len(content), nil
		}
		c.plain = content
		return 0, nil
	case typeAlert:
		return 0, c.fail(alert(content))
	case typeHandshake:
		if err := c.handshake(content); err != nil {
			return 0, c.fail(err)
		}
		return 0, nil
	}
	return 0, c.fail(fmt.Errorf("tls record: record %d has content type %d: %w", seq, typ, ErrBadRecord))
}

// next returns the next whole record, reading the socket as needed.
func (c *Conn) next() (hdr, body []byte, err error) {
	if c.rbuf == nil {
		c.rbuf = make([]byte, readBufLen)
	}
	for {
		need := headerLen
		if have := c.re - c.rs; have >= headerLen {
			h := c.rbuf[c.rs : c.rs+headerLen]
			if err := checkHeader(h); err != nil {
				return nil, nil, err
			}
			need += int(binary.BigEndian.Uint16(h[3:]))
			if have >= need {
				rec := c.rbuf[c.rs : c.rs+need]
				c.rs += need
				return rec[:headerLen], rec[headerLen:], nil
			}
		}
		if c.rs+need > len(c.rbuf) || c.rs == c.re {
			c.re = copy(c.rbuf, c.rbuf[c.rs:c.re])
			c.rs = 0
		}
		m, err := c.conn.Read(c.rbuf[c.re:])
		c.re += m
		switch {
		case m > 0 || err == nil:
		case err == io.EOF && c.re > c.rs:
			return nil, nil, fmt.Errorf("tls record: connection closed inside a record: %w", io.ErrUnexpectedEOF)
		default:
			return nil, nil, err
		}
	}
}

func checkHeader(h []byte) error {
	switch n := int(binary.BigEndian.Uint16(h[3:])); {
	case h[0] != typeApplicationData:
		return fmt.Errorf("tls record: outer content type %d, want 23 (application_data): %w", h[0], ErrBadRecord)
	case h[1] != 3 || h[2] != 3:
		return fmt.Errorf("tls record: version %#02x%02x, want 0x0303: %w", h[1], h[2], ErrBadRecord)
	case n > maxCiphertext:
		return fmt.Errorf("tls record: record of %d bytes, at most %d allowed: %w", n, maxCiphertext, ErrBadRecord)
	case n <= tagLen:
		return fmt.Errorf("tls record: record of %d bytes, too short for a tag and a type: %w", n, ErrBadRecord)
	}
	return nil
}

// alert is the error an alert record means; nil for user_canceled, which
// crypto/tls ignores in TLS 1.3 too.
func alert(content []byte) error {
	if len(content) != 2 {
		return fmt.Errorf("tls record: alert of %d bytes: %w", len(content), ErrBadRecord)
	}
	switch content[1] {
	case alertCloseNotify:
		return io.EOF
	case alertUserCanceled:
		return nil
	}
	return fmt.Errorf("tls record: peer sent alert %d: %w", content[1], tls.AlertError(content[1]))
}

// handshake handles the post-handshake messages of one record.
func (c *Conn) handshake(msgs []byte) error {
	if len(msgs) == 0 {
		return fmt.Errorf("tls record: empty handshake record: %w", ErrBadRecord)
	}
	for len(msgs) > 0 {
		if len(msgs) < 4 {
			return errFragmented
		}
		typ, l := msgs[0], int(msgs[1])<<16|int(msgs[2])<<8|int(msgs[3])
		if 4+l > len(msgs) {
			return errFragmented
		}
		body := msgs[4 : 4+l]
		msgs = msgs[4+l:]
		switch {
		case typ == hsNewSessionTicket && c.isClient:
			// We resume no sessions; the ticket only counted in seq.
		case typ == hsKeyUpdate:
			if l != 1 || body[0] > 1 {
				return fmt.Errorf("tls record: malformed KeyUpdate: %w", ErrBadRecord)
			}
			if len(msgs) > 0 {
				return fmt.Errorf("tls record: handshake data after KeyUpdate in one record: %w", ErrBadRecord)
			}
			if err := c.in.update(); err != nil {
				return fmt.Errorf("tls record: peer's key update: %w", err)
			}
			if body[0] == 1 {
				c.updateWanted.Store(true)
			}
		default:
			return fmt.Errorf("tls record: unexpected handshake message type %d: %w", typ, ErrBadRecord)
		}
	}
	return nil
}

// ConnectionState returns the state of the handshake, from the tls.Conn.
func (c *Conn) ConnectionState() tls.ConnectionState { return c.state }

// NetConn returns the socket beneath; writing or reading it corrupts the
// record stream.
func (c *Conn) NetConn() net.Conn { return c.conn }

// LocalAddr returns the socket's local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the socket's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the socket's read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline; a write that times
// out leaves the stream broken, and later writes fail.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
