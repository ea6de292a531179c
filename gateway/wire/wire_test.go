package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/straitmesh/strait/sovereignty"
)

func TestFactsRoundTrip(t *testing.T) {
	in := Facts{Classes: []string{"pii-eu"}, Regions: []string{"eu-west"}, Restricted: true, Namespace: "ns", Headers: map[string][]string{"X-A": {"1"}}, Policy: 4}
	b, err := EncodeFacts(in)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(append(b, "payload"...))
	out, err := ReadFacts(r)
	if err != nil {
		t.Fatal(err)
	}
	if out.Policy != 4 || !out.Restricted || out.Header().Get("x-a") != "1" {
		t.Errorf("round trip %+v", out)
	}
	if rest := r.Len(); rest != len("payload") {
		t.Errorf("readFacts consumed %d payload bytes", len("payload")-rest)
	}
	if _, err := ReadFacts(strings.NewReader(strings.Repeat("x", MaxFactsLine+1))); err == nil {
		t.Error("over-long facts accepted")
	}
}

// FuzzDecodeFacts: decoding never panics, and what it accepts is bounded
// and re-encodes.
func FuzzDecodeFacts(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "facts", "*.json"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ff, err := DecodeFacts(b)
		if err != nil {
			return
		}
		if len(ff.Classes) > sovereignty.MaxClasses || len(ff.Headers) > 32 {
			t.Fatalf("accepted unbounded facts %+v", ff)
		}
		_ = ff.Header()
		if ff.TraceParent != "" && (len(ff.TraceParent) != MaxTraceParent || len(ff.TraceState) > MaxTraceState) {
			t.Fatalf("accepted unbounded trace context %+v", ff)
		}
		if ff.TraceParent == "" && ff.TraceState != "" {
			t.Fatalf("tracestate without traceparent %+v", ff)
		}
		if _, err := EncodeFacts(ff); err != nil && len(b) < MaxFactsLine/2 {
			t.Fatalf("accepted facts do not re-encode: %v", err)
		}
	})
}

func TestStreamHeaderRoundTrip(t *testing.T) {
	tg := Target{Namespace: "demo", Name: "ledger", Port: 8080}
	facts, err := EncodeFacts(Facts{Classes: []string{"pii-eu"}, Regions: []string{"eu-west"}, Restricted: true, Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	b := append(EncodeStreamHeader(tg, facts), "payload"...)
	// Read whole, a byte at a time, and in pieces that end inside the
	// length, the name and the facts line: the same header and payload.
	for name, r := range map[string]func() io.Reader{
		"whole":   func() io.Reader { return bytes.NewReader(b) },
		"bytes":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"pieces":  func() io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"no data": func() io.Reader { return &emptyReads{r: bytes.NewReader(b), empty: 5} },
	} {
		got, f, rest, err := ReadStreamHeader(r(), make([]byte, MaxStreamHeader))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != tg || f.Namespace != "shop" || !f.Restricted || len(f.Classes) != 1 {
			t.Fatalf("%s: read back %v %+v", name, got, f)
		}
		if !strings.HasPrefix("payload", string(rest)) {
			t.Fatalf("%s: rest %q is not the payload's start", name, rest)
		}
	}
	// The payload a read brought along is handed back, the rest stays.
	r := bytes.NewReader(b)
	_, _, rest, err := ReadStreamHeader(r, make([]byte, MaxStreamHeader))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := io.ReadAll(r)
	if got := string(rest) + string(after); got != "payload" {
		t.Fatalf("payload %q, want %q", got, "payload")
	}
}

// emptyReads gives an empty read without an error before each of its
// first empty reads of r (3 bytes at most each), and only empty ones when
// r is nil.
type emptyReads struct {
	r     io.Reader
	empty int
	odd   bool
}

func (e *emptyReads) Read(p []byte) (int, error) {
	if e.r == nil {
		return 0, nil
	}
	if e.odd = !e.odd; e.odd && e.empty > 0 {
		e.empty--
		return 0, nil
	}
	return e.r.Read(p[:min(len(p), 3)])
}

func TestStreamHeaderRejects(t *testing.T) {
	name := "outbound_.8080_._.ledger.demo.svc.clusterset.local"
	header := func(facts string) []byte {
		return append(append([]byte{0, byte(len(name))}, name...), facts...)
	}
	for what, in := range map[string]io.Reader{
		"empty":        bytes.NewReader(nil),
		"zero length":  bytes.NewReader([]byte{0, 0}),
		"too long":     bytes.NewReader([]byte{1, 0}),
		"short name":   bytes.NewReader([]byte{0, 10, 'a'}),
		"not a target": bytes.NewReader(append([]byte{0, 5}, "hello{}\n"...)),
		"no facts":     bytes.NewReader(header("")),
		"cut facts":    bytes.NewReader(header(`{"classes":`)),
		"bad facts":    bytes.NewReader(header("{]\n")),
		"long facts":   bytes.NewReader(header(`{"namespace":"` + strings.Repeat("a", MaxFactsLine) + "\"}\n")),
		"endless":      bytes.NewReader(header(strings.Repeat(" ", 2*MaxStreamHeader))),
		"no progress":  &emptyReads{},
	} {
		if _, _, _, err := ReadStreamHeader(in, make([]byte, MaxStreamHeader)); err == nil {
			t.Errorf("%s: accepted", what)
		} else if !strings.Contains(err.Error(), "stream header") {
			t.Errorf("%s: error %q does not say what it read", what, err)
		}
	}
	// The longest facts line a connection of its own may carry is the
	// longest a stream may carry, and one byte more is refused by both.
	longest := `{"namespace":"` + strings.Repeat("a", MaxFactsLine-len(`{"namespace":""}`)-1) + `"}` + "\n"
	if len(longest) != MaxFactsLine {
		t.Fatalf("longest facts line of %d bytes", len(longest))
	}
	for _, line := range []string{longest, " " + longest} {
		_, _, _, serr := ReadStreamHeader(bytes.NewReader(header(line)), make([]byte, MaxStreamHeader))
		_, ferr := ReadFacts(strings.NewReader(line))
		if (serr == nil) != (ferr == nil) {
			t.Errorf("facts line of %d bytes: stream header %v, facts %v", len(line), serr, ferr)
		}
	}
	if _, _, _, err := ReadStreamHeader(bytes.NewReader(header("{}\n")), make([]byte, MaxStreamHeader-1)); err == nil {
		t.Error("read a header into a short buffer")
	}
}

func FuzzReadStreamHeader(f *testing.F) {
	facts, _ := EncodeFacts(Facts{Classes: []string{"pii-eu"}})
	f.Add(EncodeStreamHeader(Target{Namespace: "demo", Name: "ledger", Port: 8080}, facts))
	f.Add([]byte{0, 3, 'a', 'b', 'c', '\n'})
	traced, _ := EncodeFacts(Facts{Classes: []string{"pii-eu"}, TraceParent: testTraceParent, TraceState: "vendor=abc"})
	f.Add(EncodeStreamHeader(Target{Namespace: "demo", Name: "ledger", Port: 8080}, traced))
	f.Fuzz(func(t *testing.T, b []byte) {
		tg, ff, rest, err := ReadStreamHeader(bytes.NewReader(b), make([]byte, MaxStreamHeader))
		// A byte at a time reads the same header, or fails alike.
		tg1, ff1, rest1, err1 := ReadStreamHeader(iotest.OneByteReader(bytes.NewReader(b)), make([]byte, MaxStreamHeader))
		if (err == nil) != (err1 == nil) || tg != tg1 || !reflect.DeepEqual(ff, ff1) {
			t.Fatalf("read whole: %v %+v %v; a byte at a time: %v %+v %v", tg, ff, err, tg1, ff1, err1)
		}
		if err != nil {
			return
		}
		if !bytes.HasSuffix(b, rest) || len(rest1) > 1 || !bytes.HasPrefix(rest, rest1) {
			t.Fatalf("rest %q (a byte at a time %q) is not what follows the header in %q", rest, rest1, b)
		}
		if len(ff.TraceParent) > MaxTraceParent || len(ff.TraceState) > MaxTraceState {
			t.Fatalf("accepted unbounded trace context %+v", ff)
		}
		if tg.Port < 1 || tg.Port > 65535 || tg.Name == "" || tg.Namespace == "" {
			t.Fatalf("accepted target %+v", tg)
		}
	})
}

func TestStatusLine(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteAnswer(&buf, nil); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("payload")
	if err := ReadAnswer(&buf); err != nil {
		t.Fatalf("readStatus(OK) = %v", err)
	}
	if rest, _ := io.ReadAll(&buf); string(rest) != "payload" {
		t.Fatalf("payload after status = %q; ReadAnswer consumed payload bytes", rest)
	}

	buf.Reset()
	WriteAnswer(&buf, errors.New("no endpoint\nanswered"))
	err := ReadAnswer(&buf)
	if err == nil || err.Error() != "no endpoint answered" {
		t.Fatalf("readStatus(ERR) = %v", err)
	}

	buf.Reset()
	WriteAnswer(&buf, errors.New(strings.Repeat("x", 2000)))
	if buf.Len() != MaxAnswerLine {
		t.Fatalf("long refusal is %d bytes, want %d", buf.Len(), MaxAnswerLine)
	}
	if err := ReadAnswer(&buf); err == nil {
		t.Fatal("truncated refusal read as OK")
	}

	for _, in := range []string{"", "OK", "HTTP/1.1 200 OK\r\n", strings.Repeat("y", 600)} {
		if err := ReadAnswer(strings.NewReader(in)); err == nil {
			t.Errorf("readStatus(%q) = nil", in)
		}
	}
}

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestStreamHeaderTraceContext: the trace context goes through a stream
// header unchanged; a header without one (a peer that does not trace, or
// an older one) reads as before; one the reader does not know is ignored.
func TestStreamHeaderTraceContext(t *testing.T) {
	tg := Target{Namespace: "demo", Name: "ledger", Port: 8080}
	facts, err := EncodeFacts(Facts{Classes: []string{"pii-eu"}, TraceParent: testTraceParent, TraceState: "vendor=abc"})
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(append(EncodeStreamHeader(tg, facts), "payload"...))
	_, f, rest, err := ReadStreamHeader(r, make([]byte, MaxStreamHeader))
	if err != nil {
		t.Fatal(err)
	}
	if f.TraceParent != testTraceParent || f.TraceState != "vendor=abc" || len(f.Classes) != 1 {
		t.Fatalf("read back %+v", f)
	}
	if after, _ := io.ReadAll(r); string(rest)+string(after) != "payload" {
		t.Fatalf("payload %q then %q", rest, after)
	}

	// A peer that does not trace sends no members at all.
	plain, err := EncodeFacts(Facts{Classes: []string{"pii-eu"}})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain, []byte("trace")) {
		t.Fatalf("facts without a trace context carry %q", plain)
	}
	if _, f, _, err = ReadStreamHeader(bytes.NewReader(EncodeStreamHeader(tg, plain)), make([]byte, MaxStreamHeader)); err != nil || f.TraceParent != "" || f.TraceState != "" {
		t.Fatalf("plain header: %+v, %v", f, err)
	}

	// An older reader: the same JSON into a struct without the members.
	var old struct {
		Classes []string `json:"classes"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(facts), &old); err != nil || len(old.Classes) != 1 {
		t.Fatalf("a reader without trace members: %+v, %v", old, err)
	}
}

// TestTraceContextIsOnlyForTracing: a malformed or oversized trace
// context is dropped on both ends; the facts still carry the flow.
func TestTraceContextIsOnlyForTracing(t *testing.T) {
	for name, tc := range map[string]struct{ parent, state string }{
		"zero trace id": {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		"zero span id":  {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""},
		"upper case":    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		"version ff":    {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		"too long":      {testTraceParent + "-00", ""},
		"long state":    {testTraceParent, strings.Repeat("a", MaxTraceState+1)},
		"control state": {testTraceParent, "a=b\n"},
		"state alone":   {"", "a=b"},
	} {
		line := fmt.Sprintf(`{"classes":["pii-eu"],"traceparent":%q,"tracestate":%q}`, tc.parent, tc.state)
		f, err := DecodeFacts([]byte(line))
		if err != nil {
			t.Errorf("%s: facts refused for their trace context: %v", name, err)
			continue
		}
		if f.TraceParent != "" || f.TraceState != "" || len(f.Classes) != 1 {
			t.Errorf("%s: decoded %+v", name, f)
		}
		b, err := EncodeFacts(Facts{Classes: []string{"pii-eu"}, TraceParent: tc.parent, TraceState: tc.state})
		if err != nil || bytes.Contains(b, []byte("trace")) {
			t.Errorf("%s: encoded %q, %v", name, b, err)
		}
	}
	// Facts that fill the line lose their trace context, not their flow.
	big := Facts{Headers: map[string][]string{"X-Big": {strings.Repeat("v", MaxFactsLine-80)}}, TraceParent: testTraceParent, TraceState: "a=b"}
	b, err := EncodeFacts(big)
	if err != nil || bytes.Contains(b, []byte("traceparent")) {
		t.Fatalf("full facts with a trace context: %d bytes, %v", len(b), err)
	}
}
