package record

// The TLS 1.3 record protection this package speaks (RFC 8446 §5, §7):
//
//	TLSCiphertext, as on the wire:
//	  0      type        always 23 (application_data) after the handshake
//	  1..2   version     always 0x03 0x03
//	  3..4   length      of the encrypted body, at most 2^14 + 256
//	  5..    body        AEAD-Seal(key, nonce, inner, additional data = bytes 0..4)
//
//	inner plaintext (TLSInnerPlaintext), sealed into the body:
//	  content || content type (1 byte) || zero padding
//	  content type: 23 application data, 21 alert, 22 handshake
//	  content: at most 2^14 bytes; we never pad, the peer may
//
//	nonce: the 12-byte write iv XOR the 64-bit record sequence number,
//	  big-endian, left-padded with zeros; the sequence number starts at 0
//	  with every key and counts every record (data, alert, handshake).
//
//	keys: key = HKDF-Expand-Label(secret, "key", "", key length)
//	      iv  = HKDF-Expand-Label(secret, "iv", "", 12)
//	KeyUpdate (handshake type 24, body: request_update 0 or 1) switches the
//	  sender's key after the record that carries it:
//	      secret' = HKDF-Expand-Label(secret, "traffic upd", "", hash length)
//
// Flow: each side seals with its own traffic secret (the client's is
// CLIENT_TRAFFIC_SECRET_0, the server's SERVER_TRAFFIC_SECRET_0) and opens
// with the other's. A KeyUpdate with request_update 1 asks the peer to send
// a KeyUpdate of its own before its next application data.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	headerLen     = 5
	maxPlaintext  = 1 << 14            // content bytes in one record
	maxCiphertext = maxPlaintext + 256 // body bytes in one record (RFC 8446 §5.2)
	tagLen        = 16                 // every TLS 1.3 AEAD has a 16-byte tag
	maxRecord     = headerLen + maxPlaintext + 1 + tagLen
	nonceLen      = 12

	typeAlert           = 21
	typeHandshake       = 22
	typeApplicationData = 23

	hsNewSessionTicket = 4
	hsKeyUpdate        = 24

	alertCloseNotify  = 0
	alertUserCanceled = 90
)

// suite is what a TLS 1.3 cipher suite fixes for record protection.
type suite struct {
	id     uint16
	keyLen int
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
}

func aesGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func suiteFor(id uint16) (*suite, error) {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256:
		return &suite{id, 16, sha256.New, aesGCM}, nil
	case tls.TLS_AES_256_GCM_SHA384:
		return &suite{id, 32, sha512.New384, aesGCM}, nil
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return &suite{id, chacha20poly1305.KeySize, sha256.New, chacha20poly1305.New}, nil
	}
	return nil, fmt.Errorf("tls record: cipher suite %s: %w", tls.CipherSuiteName(id), ErrUnsupported)
}

// expandLabel is HKDF-Expand-Label(secret, label, "", length) (RFC 8446 §7.1).
func (s *suite) expandLabel(secret []byte, label string, length int) ([]byte, error) {
	const prefix = "tls13 "
	info := make([]byte, 0, 4+len(prefix)+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len(prefix)+len(label)))
	info = append(info, prefix...)
	info = append(info, label...)
	info = append(info, 0) // empty context
	out, err := hkdf.Expand(s.hash, secret, string(info), length)
	if err != nil {
		return nil, fmt.Errorf("tls record: expand label %q: %w", label, err)
	}
	return out, nil
}

// direction is the protection state of one direction of a connection.
type direction struct {
	suite   *suite
	secret  []byte
	aead    cipher.AEAD
	iv      [nonceLen]byte
	seq     uint64
	nonce   [nonceLen]byte
	hdr     [headerLen]byte
	updates int // KeyUpdates so far, for tests
}

// setSecret installs the key and iv derived from secret and resets seq.
func (d *direction) setSecret(s *suite, secret []byte) error {
	if len(secret) != s.hash().Size() {
		return fmt.Errorf("tls record: traffic secret of %d bytes for %s: %w",
			len(secret), tls.CipherSuiteName(s.id), ErrUnsupported)
	}
	key, err := s.expandLabel(secret, "key", s.keyLen)
	if err != nil {
		return err
	}
	iv, err := s.expandLabel(secret, "iv", nonceLen)
	if err != nil {
		return err
	}
	aead, err := s.aead(key)
	if err != nil {
		return fmt.Errorf("tls record: new aead: %w", err)
	}
	d.suite, d.secret, d.aead, d.seq = s, secret, aead, 0
	copy(d.iv[:], iv)
	return nil
}

// update moves to the next traffic secret (RFC 8446 §7.2).
func (d *direction) update() error {
	next, err := d.suite.expandLabel(d.secret, "traffic upd", len(d.secret))
	if err != nil {
		return err
	}
	if err := d.setSecret(d.suite, next); err != nil {
		return err
	}
	d.updates++
	return nil
}

// nextNonce returns the nonce for the current record and counts it.
func (d *direction) nextNonce() []byte {
	d.nonce = d.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], d.seq)
	for i, b := range s {
		d.nonce[nonceLen-8+i] ^= b
	}
	d.seq++
	return d.nonce[:]
}

// header returns the record header of a body of n bytes, which is also
// the additional data of its AEAD. It lives in d, since a slice passed to
// the AEAD would escape.
func (d *direction) header(n int) []byte {
	d.hdr = [headerLen]byte{typeApplicationData, 3, 3, byte(n >> 8), byte(n)}
	return d.hdr[:]
}

// seal appends one record holding content with inner type typ, copying
// content next to its type byte and sealing in place.
func (d *direction) seal(dst, content []byte, typ byte) []byte {
	hdr := d.header(len(content) + 1 + tagLen)
	dst = append(dst, hdr...)
	start := len(dst)
	dst = append(append(dst, content...), typ)
	return d.aead.Seal(dst[:start], d.nextNonce(), dst[start:], hdr)
}

// sealInner appends one record whose inner plaintext (content and its
// type byte) is already contiguous in inner, sealing out of place.
func (d *direction) sealInner(dst, inner []byte) []byte {
	hdr := d.header(len(inner) + tagLen)
	return d.aead.Seal(append(dst, hdr...), d.nextNonce(), inner, hdr)
}
