package catalog

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Wire format of catalog gossip. Every message is
//
//	'S' 'C' <format 2> <kind> <flags> <body>
//
// where flags bit 0 says the body is DEFLATE-compressed. Strings are a
// uvarint length and bytes; numbers are uvarints. Bodies:
//
//	delta, state: uvarint node count, then per node its header, a uvarint
//	              record count and the records
//	keyop:        id, from, op byte, key bytes, then the sender's
//	              chain fingerprint, certificate chain and signature
//	keyack:       id, node, error text
//	want:         node asking for the receiver's whole entry
//
// A header is node, cluster, region, zone, cloud, gateway, control,
// version, a leaving byte (these are what the signature covers, see
// sign.go), then a flags byte (bit 0: the records are the whole public
// set, not a delta), the 32-byte digest of the public set, the chain
// fingerprint (SHA-256 of the chain bytes), the certificate chain (whole
// copies and the owner's re-signed header after a certificate renewal;
// DER certificates concatenated, leaf first, at most maxCertBytes) and
// the signature. A record is its fields (namespace, name, ports, labels,
// counts, version, flags, changed) and a signature (scoped records only).
//
// DecodeMessage checks every length against the limits in model.go before
// allocating, so malformed input costs at most the bytes it carries.
const (
	kindDelta  byte = 1
	kindState  byte = 2
	kindKeyOp  byte = 3
	kindKeyAck byte = 4
	kindWant   byte = 5

	flagFlate byte = 1

	formatVersion byte = 2

	// compressAbove is the body size from which messages are compressed.
	compressAbove = 1024
)

// ErrMalformed is wrapped by every decoding failure.
var ErrMalformed = errors.New("malformed gossip message")

// nodeHeader is the part of an entry that is not per service.
type nodeHeader struct {
	Node, Cluster, Region, Zone, Cloud, Gateway, Control string
	Version                                              uint64
	Leaving                                              bool
	// Full says the records are the owner's whole public set; otherwise
	// they are a delta. Not signed: flipping it only makes the digest
	// check fail.
	Full bool
	// Digest is of the owner's public record set at Version.
	Digest [digestLen]byte
	// CertFP is the SHA-256 of Cert, the signer's certificate chain (DER,
	// concatenated, leaf first); Cert is left out of deltas.
	CertFP, Cert []byte
	Sig          []byte
}

// record is one service of one gateway, versioned by its owner.
type record struct {
	Service
	Version uint64
	// Deleted marks a tombstone: the service is gone (or withheld from
	// this audience); it is collected after the grace period.
	Deleted bool
	// Scoped records are only ever sent directly to gateways in the
	// service's allowed regions, never gossiped or relayed.
	Scoped bool
	// Changed is the owner's wall clock (Unix ns) at the change, for the
	// change-to-receipt latency metric.
	Changed int64

	// Sig is the owner's signature of a scoped record (sign.go).
	Sig []byte

	deletedAt time.Time // local time the tombstone was learned; not sent
	hash      [digestLen]byte
	hashed    bool
}

type wireNode struct {
	nodeHeader
	Records []*record
}

type keyOp struct {
	ID   string
	From string // node to acknowledge to
	Op   byte   // keyInstall, keyUse, keyRemove
	Key  []byte
	// The initiating gateway's signature (sign.go); required by catalogs
	// that verify.
	CertFP, Cert, Sig []byte
}

type keyAck struct {
	ID, Node, Err string
}

type message struct {
	Kind   byte
	Nodes  []*wireNode
	KeyOp  *keyOp
	KeyAck *keyAck
	Want   string // kindWant: the node asking
}

var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// encodeMessage serialises m, compressing bodies over compressAbove bytes
// with a pooled writer (a fresh compressor per packet costs more CPU than
// the gossip itself).
func encodeMessage(m *message) []byte {
	var body bytes.Buffer
	w := &writer{w: &body}
	switch m.Kind {
	case kindDelta, kindState:
		w.uvarint(uint64(len(m.Nodes)))
		for _, n := range m.Nodes {
			w.header(&n.nodeHeader)
			w.uvarint(uint64(len(n.Records)))
			for _, r := range n.Records {
				w.record(r)
			}
		}
	case kindKeyOp:
		w.str(m.KeyOp.ID)
		w.str(m.KeyOp.From)
		w.byte(m.KeyOp.Op)
		w.bytes(m.KeyOp.Key)
		w.bytes(m.KeyOp.CertFP)
		w.bytes(m.KeyOp.Cert)
		w.bytes(m.KeyOp.Sig)
	case kindKeyAck:
		w.str(m.KeyAck.ID)
		w.str(m.KeyAck.Node)
		w.str(m.KeyAck.Err)
	case kindWant:
		w.str(m.Want)
	}
	out := bytes.NewBuffer(make([]byte, 0, 5+body.Len()))
	out.Write([]byte{'S', 'C', formatVersion, m.Kind, 0})
	if body.Len() <= compressAbove {
		out.Write(body.Bytes())
		return out.Bytes()
	}
	out.Bytes()[4] = flagFlate
	fw := flateWriters.Get().(*flate.Writer)
	fw.Reset(out)
	fw.Write(body.Bytes())
	fw.Close()
	flateWriters.Put(fw)
	return out.Bytes()
}

// DecodeMessage parses and validates one gossip payload. It never panics;
// malformed, oversized or over-limit input is an error wrapping ErrMalformed.
func DecodeMessage(b []byte) (*message, error) {
	m, err := decodeMessage(b, MaxMessageBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m, nil
}

func decodeMessage(b []byte, limit int64) (*message, error) {
	if len(b) < 5 || b[0] != 'S' || b[1] != 'C' {
		return nil, errors.New("not a catalog message")
	}
	if b[2] != formatVersion {
		return nil, fmt.Errorf("format %d, want %d", b[2], formatVersion)
	}
	m := &message{Kind: b[3]}
	var src byteReader
	switch b[4] {
	case 0:
		src = bytes.NewReader(b[5:])
	case flagFlate:
		fr := flate.NewReader(bytes.NewReader(b[5:]))
		defer fr.Close()
		src = bufio.NewReaderSize(io.LimitReader(fr, limit), 32<<10)
	default:
		return nil, fmt.Errorf("unknown flags %#x", b[4])
	}
	r := &reader{r: src, interned: map[string]string{}, labelSets: map[string]map[string]string{}}
	switch m.Kind {
	case kindDelta, kindState:
		n := r.count(MaxNodes, "nodes")
		if m.Kind == kindDelta && n != 1 && r.err == nil {
			return nil, fmt.Errorf("delta carries %d nodes, want 1", n)
		}
		for i := 0; i < n && r.err == nil; i++ {
			wn := &wireNode{}
			r.header(&wn.nodeHeader)
			k := r.count(MaxServices, "services")
			wn.Records = make([]*record, 0, min(k, 1024))
			for j := 0; j < k && r.err == nil; j++ {
				wn.Records = append(wn.Records, r.record())
			}
			if r.err == nil {
				if err := wn.validate(); err != nil {
					return nil, fmt.Errorf("node %d: %w", i, err)
				}
			}
			m.Nodes = append(m.Nodes, wn)
		}
	case kindKeyOp:
		m.KeyOp = &keyOp{ID: r.str(64), From: r.str(MaxNameLen), Op: r.byte(), Key: r.bytes(32),
			CertFP: r.bytes(digestLen), Cert: r.bytes(maxCertBytes), Sig: r.bytes(maxSigBytes)}
		if r.err == nil && (m.KeyOp.Op < keyInstall || m.KeyOp.Op > keyRemove) {
			return nil, fmt.Errorf("unknown key operation %d", m.KeyOp.Op)
		}
	case kindKeyAck:
		m.KeyAck = &keyAck{ID: r.str(64), Node: r.str(MaxNameLen), Err: r.str(maxStrLen)}
	case kindWant:
		m.Want = r.str(MaxNameLen)
	default:
		return nil, fmt.Errorf("unknown kind %d", m.Kind)
	}
	if r.err != nil {
		if b[4] == flagFlate && int64(r.n) >= limit-16 {
			return nil, fmt.Errorf("decompresses to more than %d bytes", limit)
		}
		return nil, r.err
	}
	if _, err := r.r.ReadByte(); err != io.EOF {
		return nil, errors.New("trailing bytes")
	}
	return m, nil
}

func (n *wireNode) validate() error {
	for _, f := range []struct{ name, v string }{{"node", n.Node}, {"cluster", n.Cluster}, {"region", n.Region}} {
		if f.v == "" {
			return fmt.Errorf("%s: missing", f.name)
		}
		if len(f.v) > MaxNameLen {
			return fmt.Errorf("%s: longer than %d bytes", f.name, MaxNameLen)
		}
	}
	for i, r := range n.Records {
		if r.Namespace == "" || r.Name == "" {
			return fmt.Errorf("services[%d]: namespace and name are required", i)
		}
		for _, p := range r.Ports {
			if p.Port < 1 || p.Port > 65535 {
				return fmt.Errorf("services[%d]: port %d out of range", i, p.Port)
			}
		}
		if r.Healthy > r.Total {
			return fmt.Errorf("services[%d]: healthy %d, total %d", i, r.Healthy, r.Total)
		}
	}
	return nil
}

type writer struct{ w *bytes.Buffer }

func (w *writer) uvarint(v uint64) { w.w.Write(binary.AppendUvarint(nil, v)) }
func (w *writer) byte(b byte)      { w.w.WriteByte(b) }
func (w *writer) str(s string)     { w.uvarint(uint64(len(s))); w.w.WriteString(s) }
func (w *writer) bytes(b []byte)   { w.uvarint(uint64(len(b))); w.w.Write(b) }

// headerFields writes what an entry's signature covers.
func (w *writer) headerFields(h *nodeHeader) {
	for _, s := range []string{h.Node, h.Cluster, h.Region, h.Zone, h.Cloud, h.Gateway, h.Control} {
		w.str(s)
	}
	w.uvarint(h.Version)
	if h.Leaving {
		w.byte(1)
	} else {
		w.byte(0)
	}
}

func (w *writer) header(h *nodeHeader) {
	w.headerFields(h)
	if h.Full {
		w.byte(1)
	} else {
		w.byte(0)
	}
	w.w.Write(h.Digest[:])
	w.bytes(h.CertFP)
	w.bytes(h.Cert)
	w.bytes(h.Sig)
}

func (w *writer) record(r *record) {
	w.recordBody(r)
	w.bytes(r.Sig)
}

// recordBody writes a record's canonical encoding (labels sorted), which
// the entry digest and scoped signatures cover.
func (w *writer) recordBody(r *record) {
	w.str(r.Namespace)
	w.str(r.Name)
	w.uvarint(uint64(len(r.Ports)))
	for _, p := range r.Ports {
		w.str(p.Name)
		w.uvarint(uint64(p.Port))
		w.str(p.Protocol)
	}
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w.uvarint(uint64(len(keys)))
	for _, k := range keys {
		w.str(k)
		w.str(r.Labels[k])
	}
	w.uvarint(uint64(r.Healthy))
	w.uvarint(uint64(r.Total))
	w.uvarint(uint64(r.Weight))
	w.uvarint(r.Version)
	var flags byte
	if r.Deleted {
		flags |= 1
	}
	if r.Scoped {
		flags |= 2
	}
	w.byte(flags)
	w.uvarint(uint64(r.Changed))
}

// reader decodes with a sticky error; every length is checked before use.
type byteReader interface {
	io.Reader
	io.ByteReader
}

type reader struct {
	r         byteReader
	err       error
	n         int // bytes consumed
	interned  map[string]string
	labelSets map[string]map[string]string
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(r.r)
	if err != nil {
		r.fail("truncated number: %v", err)
		return 0
	}
	r.n += uvarintLen(v)
	return v
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	b, err := r.r.ReadByte()
	if err != nil {
		r.fail("truncated: %v", err)
	}
	r.n++
	return b
}

func (r *reader) count(limit int, what string) int {
	v := r.uvarint()
	if v > uint64(limit) {
		r.fail("%d %s exceeds limit of %d", v, what, limit)
		return 0
	}
	return int(v)
}

func (r *reader) raw(limit int) []byte {
	n := r.count(limit, "bytes of string")
	if r.err != nil || n == 0 {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		r.fail("truncated string: %v", err)
		return nil
	}
	r.n += n
	return b
}

func (r *reader) bytes(limit int) []byte { return r.raw(limit) }
func (r *reader) str(limit int) string   { return string(r.raw(limit)) }

// istr reads a string that repeats across records and shares one copy.
func (r *reader) istr(limit int) string {
	b := r.raw(limit)
	if s, ok := r.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	r.interned[s] = s
	return s
}

func (r *reader) header(h *nodeHeader) {
	h.Node = r.str(MaxNameLen)
	h.Cluster = r.istr(MaxNameLen)
	h.Region = r.istr(MaxNameLen)
	h.Zone = r.istr(MaxNameLen)
	h.Cloud = r.istr(MaxNameLen)
	h.Gateway = r.str(maxStrLen)
	h.Control = r.str(maxStrLen)
	h.Version = r.uvarint()
	switch r.byte() {
	case 0:
	case 1:
		h.Leaving = true
	default:
		r.fail("bad leaving flag")
	}
	switch r.byte() {
	case 0:
	case 1:
		h.Full = true
	default:
		r.fail("bad header flags")
	}
	if r.err == nil {
		if _, err := io.ReadFull(r.r, h.Digest[:]); err != nil {
			r.fail("truncated digest: %v", err)
		}
		r.n += digestLen
	}
	h.CertFP = r.bytes(digestLen)
	if len(h.CertFP) != 0 && len(h.CertFP) != digestLen {
		r.fail("certificate fingerprint of %d bytes", len(h.CertFP))
	}
	h.Cert = r.bytes(maxCertBytes)
	h.Sig = r.bytes(maxSigBytes)
}

func (r *reader) record() *record {
	rec := &record{}
	rec.Namespace = r.istr(MaxNameLen)
	rec.Name = r.str(MaxNameLen)
	np := r.count(MaxPorts, "ports")
	if np > 0 {
		rec.Ports = make([]Port, np)
		for i := range rec.Ports {
			rec.Ports[i] = Port{Name: r.istr(MaxNameLen), Port: int(min(r.uvarint(), 1<<20)), Protocol: r.istr(MaxNameLen)}
		}
	}
	nl := r.count(MaxLabels, "labels")
	if nl > 0 {
		var key strings.Builder
		kv := make([]string, 0, 2*nl)
		for range nl {
			k, v := r.istr(maxStrLen), r.istr(maxStrLen)
			kv = append(kv, k, v)
			key.WriteString(k)
			key.WriteByte(0)
			key.WriteString(v)
			key.WriteByte(0)
		}
		if set, ok := r.labelSets[key.String()]; ok {
			rec.Labels = set
		} else if r.err == nil {
			set := make(map[string]string, nl)
			for i := 0; i < len(kv); i += 2 {
				set[kv[i]] = kv[i+1]
			}
			r.labelSets[key.String()] = set
			rec.Labels = set
		}
	}
	rec.Healthy = int(min(r.uvarint(), 1<<40))
	rec.Total = int(min(r.uvarint(), 1<<40))
	rec.Weight = int(min(r.uvarint(), 1<<20))
	rec.Version = r.uvarint()
	flags := r.byte()
	if flags&^3 != 0 {
		r.fail("bad record flags %#x", flags)
	}
	rec.Deleted, rec.Scoped = flags&1 != 0, flags&2 != 0
	rec.Changed = int64(min(r.uvarint(), 1<<62))
	rec.Sig = r.bytes(maxSigBytes)
	return rec
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
