// Package record is a user-space TLS 1.3 record layer, like kernel TLS in
// Go: crypto/tls makes the handshake, then a Conn protects the records of
// the connection itself, with fewer copies and system calls than
// crypto/tls. record.go opens with the wire format.
//
// Use: put a Raw beneath tls.Client or tls.Server and a fresh Capture in
// the (cloned, per connection) Config's KeyLogWriter; after Handshake
// returns, call Switch and use only the Conn it returns. If Switch fails
// with ErrUnsupported, keep the *tls.Conn.
//
// Invariants:
//
//   - The records are TLS 1.3 records as crypto/tls writes and reads them
//     (RFC 8446 §5): a crypto/tls peer cannot tell. Our Conn writes to and
//     reads from crypto/tls on either side (TestInteropWrite,
//     TestInteropRead); key derivation matches RFC 8448
//     (TestTrafficKeyRFC8448); the three suites TLS_AES_128_GCM_SHA256,
//     TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256 round-trip
//     between two Conns (TestSuites; crypto/tls picks AES-128-GCM on
//     hardware with AES and cannot be made to pick another).
//   - Switch is valid only if no application record has been sent or
//     received on the tls.Conn, since both sequence numbers start at 0:
//     Switch must come right after Handshake, before any Read or Write on
//     the tls.Conn, and a server's tls.Config must have
//     SessionTicketsDisabled: true (crypto/tls sends NewSessionTicket
//     inside a server's Handshake). A client takes tickets from a server
//     that sends them and ignores them (TestClientIgnoresSessionTickets).
//   - Raw keeps crypto/tls from reading past the handshake: what the peer
//     sends right after its Finished is left in the socket for the Conn
//     (TestRawNoOverRead, whose control shows the loss without Raw;
//     TestRawRecordBoundary).
//   - Capture keeps only the two application traffic secrets, and Switch
//     takes them out of it (TestCapture).
//   - No key seals more than 2^24 records: before that, the writer sends
//     KeyUpdate and moves to the next key; a peer's KeyUpdate moves the
//     read key, and one with request_update 1 makes the next Write send
//     ours first (TestKeyLimit, TestKeyUpdateRequested,
//     TestKeyUpdateAnswered).
//   - Write copies each chunk of p once, into a pooled buffer where it is
//     sealed in place, and writes up to 256 KiB of records per write(2);
//     p is not modified. WriteOwned seals straight from p into the buffer,
//     borrowing the byte after each chunk for the content type and
//     restoring it; it writes the same bytes as Write (TestWriteOwned). A
//     write error is sticky. No buffer is held between writes.
//   - Read takes up to 256 KiB per read(2) into a per-connection buffer
//     and opens a record straight into p when its plaintext fits, and in
//     place in the buffer otherwise (then copies out). Any read size
//     yields the same stream (TestReadSizes).
//   - Nothing unauthenticated is ever returned: a record that does not
//     open, is longer than 2^14+256 bytes, has another outer type than
//     application_data (change_cipher_spec included), another version, or
//     an unknown inner type, fails Read with ErrBadRecord, and so does
//     every later Read (TestTamper, TestInnerContent, FuzzRead). Alerts end the stream:
//     close_notify with io.EOF, others with a tls.AlertError (user_canceled
//     is ignored, as crypto/tls does). Handshake messages split over
//     records are refused. Errors of the socket come back unwrapped, so
//     that a timeout is a net.Error; a read timeout leaves the Conn usable
//     (TestDeadlines).
//   - Close and CloseWrite send close_notify; crypto/tls then reads
//     io.EOF, and our Read gives io.EOF after a crypto/tls peer's Close (TestClose).
package record
