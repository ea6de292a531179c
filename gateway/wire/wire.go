// Package wire is every byte format Strait puts on the wire or reads from
// a client, and nothing else: no sockets, no dialling, no listening
// (TestWireAndRouteDoNotTouchTheNetwork in package gateway proves it).
//
// Between two gateways (mTLS, TLS 1.3 both ways; the peer's cluster and
// region come from its certificate, never from these bytes):
//
//	ALPN             carried as           first bytes, outbound -> inbound               answer, inbound -> outbound
//	strait-tunnel/1  yamux streams on     per stream: u16 length, SNI of the target,    per stream: "OK\n" or "ERR <reason>\n"
//	                 one TLS connection   then the facts line                            (at most 512 bytes), then payload
//	strait-flow/1    one TLS connection   the facts line (the target is the TLS SNI)     "OK\n" or "ERR <reason>\n", then payload
//	                 per stream
//
//	SNI of a target        outbound_.<port>_._.<service>.<namespace>.svc.clusterset.local
//	facts line             one JSON object and "\n", at most 4096 bytes (Facts): the
//	                       classes, the regions they allow, classifying headers, the
//	                       source namespace, the outbound gateway's policy version
//	ERR reasons            "residency: ..." for a residency refusal (never a failure
//	                       of the peer); anything else lets the outbound side fail over
//	trace context          optional "traceparent" and "tracestate" members of the facts
//	                       line (W3C Trace Context, at most 55 and 512 bytes): the span
//	                       the outbound gateway opened the stream under. A peer that does
//	                       not trace sends neither; one that does not know them ignores
//	                       them (JSON members it does not know), so both versions of a
//	                       gateway talk to each other. They are used for tracing only:
//	                       a malformed or oversized one is dropped, never refused
//
// The inbound side sends nothing the peer sent after the header on before
// it has answered. A stream header is read in as few reads as the stream
// allows; the payload bytes those reads bring along are handed back to
// the caller (ReadStreamHeader's rest), which holds them until the
// service's endpoint took the connection. The facts line of a connection
// of its own and the answer line are read one byte at a time, so no
// payload byte is consumed with them.
//
// From local workloads (sni.go, clienthello.go):
//
//	CONNECT authority      <service>.<namespace>.svc.clusterset.local:<port> (ParseAuthority)
//	passthrough SNI        outbound_.<port>_._.<service>.<namespace>.svc.cluster.local (ParseMeshSNI)
//	TLS ClientHello        read without answering, bounded (ReadClientHello), replayed upstream
//
// Every reader has a fuzz target beside it: FuzzReadStreamHeader,
// FuzzDecodeFacts, FuzzParseSNI, FuzzParseAuthority, FuzzParseMeshSNI,
// FuzzReadClientHello. Facts are bounded (classes, regions, headers) and
// can only narrow a decision: see decideInbound in package gateway.
package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/straitmesh/strait/sovereignty"
)

// ALPNTunnel is the ALPN protocol of a tunnel: one mTLS connection between
// two gateways that carries many streams (yamux). Each stream starts with
// a header (the target's SNI and the flow facts) and is answered with the
// same status line as a connection of its own.
const ALPNTunnel = "strait-tunnel/1"

// ALPNFlow is the ALPN protocol with which two gateways agree that the
// outbound one sends a flow-facts line right after the mTLS handshake,
// before the inbound one answers. A peer that does not offer it sends no
// facts, and the inbound gateway then classifies only by what it sees.
const ALPNFlow = "strait-flow/1"

// MaxStreamName bounds the target name in a stream header (a DNS name).
const MaxStreamName = 255

// EncodeStreamHeader is the start of every tunnel stream: the target as a
// length-prefixed SNI, then the facts line.
func EncodeStreamHeader(t Target, facts []byte) []byte {
	sni := t.SNI()
	b := make([]byte, 0, 2+len(sni)+len(facts))
	b = binary.BigEndian.AppendUint16(b, uint16(len(sni)))
	b = append(b, sni...)
	return append(b, facts...)
}

// MaxStreamHeader bounds a stream header: the target name's length, the
// name, and the facts line with its newline.
const MaxStreamHeader = 2 + MaxStreamName + MaxFactsLine

// ReadStreamHeader reads a stream header from r into buf, which must hold
// MaxStreamHeader bytes, in as few reads as r allows (a tunnel stream
// gives the whole header in one). rest is what those reads brought beyond
// the header: the first payload bytes, which come before anything read
// from r next. It is part of buf.
func ReadStreamHeader(r io.Reader, buf []byte) (t Target, f Facts, rest []byte, err error) {
	if len(buf) < MaxStreamHeader {
		return Target{}, Facts{}, nil, fmt.Errorf("read stream header: buffer of %d bytes (want %d)", len(buf), MaxStreamHeader)
	}
	n, l := 0, -1 // bytes read; the name's length once known
	empty := 0    // reads in a row that gave nothing and no error
	for {
		if n >= 2 && l < 0 {
			l = int(binary.BigEndian.Uint16(buf))
			if l == 0 || l > MaxStreamName {
				return Target{}, Facts{}, nil, fmt.Errorf("read stream header: target name of %d bytes (want 1-%d)", l, MaxStreamName)
			}
		}
		if l > 0 && n >= 2+l {
			if t.Name == "" {
				if t, err = ParseSNI(string(buf[2 : 2+l])); err != nil {
					return Target{}, Facts{}, nil, fmt.Errorf("stream header: %w", err)
				}
			}
			line := buf[2+l : n]
			if i := bytes.IndexByte(line[:min(len(line), MaxFactsLine)], '\n'); i >= 0 {
				if f, err = DecodeFacts(line[:i]); err != nil {
					return t, Facts{}, nil, fmt.Errorf("stream header: %w", err)
				}
				return t, f, line[i+1:], nil
			}
			if len(line) >= MaxFactsLine {
				return t, Facts{}, nil, fmt.Errorf("stream header: %w: longer than %d bytes", ErrBadFacts, MaxFactsLine)
			}
		}
		k, rerr := r.Read(buf[n:MaxStreamHeader])
		n += k
		if k == 0 && rerr == nil {
			if empty++; empty == 100 {
				rerr = io.ErrNoProgress
			}
		} else {
			empty = 0
		}
		if rerr != nil && k == 0 {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			if l > 0 && n >= 2+l {
				return t, Facts{}, nil, fmt.Errorf("stream header: %w: %v", ErrBadFacts, rerr)
			}
			return Target{}, Facts{}, nil, fmt.Errorf("read stream header: %w", rerr)
		}
	}
}

// MaxFactsLine bounds the facts line.
const MaxFactsLine = 4096

// Facts is the one JSON line the outbound gateway sends: what it used
// to classify the flow. The inbound gateway can only add restrictions with
// it: claimed classes join the classes it finds itself, and a claimed
// region set must contain both ends. Nothing in it can widen access.
type Facts struct {
	// Classes the outbound gateway found for the flow.
	Classes []string `json:"classes,omitempty"`
	// Regions the flow may touch (the intersection of its classes'),
	// meaningful when Restricted.
	Regions    []string `json:"regions,omitempty"`
	Restricted bool     `json:"restricted,omitempty"`
	// Namespace of the calling workload, as the outbound gateway knows it.
	Namespace string `json:"namespace,omitempty"`
	// Headers the outbound gateway's policy classifies by, as the client
	// sent them. Empty for L4 flows.
	Headers map[string][]string `json:"headers,omitempty"`
	// Policy is the outbound gateway's policy version, for the audit trail.
	Policy uint64 `json:"policy,omitempty"`
	// TraceParent and TraceState are the W3C trace context of the span
	// the outbound gateway opened the stream under (tracing only; empty
	// when it does not trace). DecodeFacts drops values that are not
	// well formed, so a reader gets either a valid pair or none.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// Bounds of the trace context in the facts line: a version-00
// traceparent is 55 bytes; W3C asks to propagate at least 512 bytes of
// tracestate, and Strait carries no more.
const (
	MaxTraceParent = 55
	MaxTraceState  = 512
)

var ErrBadFacts = errors.New("bad flow facts")

// EncodeFacts encodes f as a facts line. A trace context that does not
// fit the bounds, or would make the line too long, is left out: it never
// costs a flow its facts.
func EncodeFacts(f Facts) ([]byte, error) {
	if !validTraceParent(f.TraceParent) || len(f.TraceState) > MaxTraceState || !printableASCII(f.TraceState) {
		f.TraceParent, f.TraceState = "", ""
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode flow facts: %w", err)
	}
	if len(b)+1 > MaxFactsLine && f.TraceParent != "" {
		f.TraceParent, f.TraceState = "", ""
		return EncodeFacts(f)
	}
	if len(b)+1 > MaxFactsLine {
		return nil, fmt.Errorf("encode flow facts: %d bytes exceeds %d", len(b)+1, MaxFactsLine)
	}
	return append(b, '\n'), nil
}

// ReadFacts reads the facts line one byte at a time, so nothing after it
// is consumed, and validates it.
func ReadFacts(r io.Reader) (Facts, error) {
	var buf [MaxFactsLine]byte
	for n := 0; n < len(buf); n++ {
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			return Facts{}, fmt.Errorf("%w: %v", ErrBadFacts, err)
		}
		if buf[n] == '\n' {
			return DecodeFacts(buf[:n])
		}
	}
	return Facts{}, fmt.Errorf("%w: longer than %d bytes", ErrBadFacts, MaxFactsLine)
}

// DecodeFacts parses and bounds one facts line.
func DecodeFacts(b []byte) (Facts, error) {
	var f Facts
	if err := json.Unmarshal(b, &f); err != nil {
		return Facts{}, fmt.Errorf("%w: %v", ErrBadFacts, err)
	}
	if len(f.Classes) > sovereignty.MaxClasses || len(f.Regions) > sovereignty.MaxRegions || len(f.Headers) > 32 {
		return Facts{}, fmt.Errorf("%w: too many classes, regions or headers", ErrBadFacts)
	}
	for _, s := range append(append([]string{}, f.Classes...), f.Regions...) {
		if !sovereignty.IsLabel(s) {
			return Facts{}, fmt.Errorf("%w: %q is not a class or region name", ErrBadFacts, s)
		}
	}
	if f.Namespace != "" && !sovereignty.IsLabel(f.Namespace) {
		return Facts{}, fmt.Errorf("%w: namespace %q", ErrBadFacts, f.Namespace)
	}
	for k, vs := range f.Headers {
		if len(vs) == 0 || len(vs) > 8 || k == "" {
			return Facts{}, fmt.Errorf("%w: header %q", ErrBadFacts, k)
		}
	}
	if !validTraceParent(f.TraceParent) || len(f.TraceState) > MaxTraceState || !printableASCII(f.TraceState) {
		f.TraceParent, f.TraceState = "", ""
	}
	return f, nil
}

// validTraceParent reports whether s is a version-00 W3C traceparent
// ("00-<32 hex>-<16 hex>-<2 hex>", trace and parent IDs not all zero).
// The propagator parses it again; this only keeps junk out of Facts.
func validTraceParent(s string) bool {
	if len(s) != MaxTraceParent || s[0] != '0' || s[1] != '0' || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	zeroTrace, zeroSpan := true, true
	for i := 3; i < len(s); i++ {
		if i == 35 || i == 52 {
			continue
		}
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
		if c != '0' && i < 35 {
			zeroTrace = false
		}
		if c != '0' && i > 35 && i < 52 {
			zeroSpan = false
		}
	}
	return !zeroTrace && !zeroSpan
}

// printableASCII reports whether s is printable ASCII (tracestate's alphabet
// is narrower still; the propagator checks the rest).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Header returns the facts' headers as an http.Header with canonical keys.
func (f Facts) Header() http.Header {
	if len(f.Headers) == 0 {
		return nil
	}
	h := make(http.Header, len(f.Headers))
	for k, vs := range f.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		h[ck] = append(h[ck], vs...)
	}
	return h
}

// The inbound gateway answers every accepted stream with one status line
// before any payload: "OK\n", or "ERR <reason>\n" and close. It lets the
// outbound side fail over before it has sent a byte.
const MaxAnswerLine = 512

func WriteAnswer(w io.Writer, err error) error {
	line := "OK\n"
	if err != nil {
		line = "ERR " + strings.ReplaceAll(err.Error(), "\n", " ")
		if len(line) > MaxAnswerLine-1 {
			line = line[:MaxAnswerLine-1]
		}
		line += "\n"
	}
	_, werr := io.WriteString(w, line)
	return werr
}

// ReadAnswer reads the status line one byte at a time so that no payload
// byte sent right after it is consumed.
func ReadAnswer(r io.Reader) error {
	var buf [MaxAnswerLine]byte
	for n := 0; n < len(buf); n++ {
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("closed the stream before answering")
			}
			return fmt.Errorf("read answer: %w", err)
		}
		if buf[n] == '\n' {
			line := string(buf[:n])
			if line == "OK" {
				return nil
			}
			if reason, ok := strings.CutPrefix(line, "ERR "); ok {
				return &Refusal{reason}
			}
			return fmt.Errorf("unexpected answer %q", line)
		}
	}
	return errors.New("answer longer than 512 bytes")
}

// Refusal is an "ERR <reason>" answer from another gateway.
type Refusal struct{ Reason string }

func (e *Refusal) Error() string { return e.Reason }

// residency reports whether the remote gateway refused for residency.
func (e *Refusal) Residency() bool { return strings.HasPrefix(e.Reason, ResidencyPrefix) }

// ResidencyPrefix starts every residency refusal an inbound gateway sends.
const ResidencyPrefix = "residency: "
