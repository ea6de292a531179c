package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	r := bytes.NewReader(b)
	got, f, err := ReadStreamHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	if got != tg || f.Namespace != "shop" || !f.Restricted || len(f.Classes) != 1 {
		t.Fatalf("read back %v %+v", got, f)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "payload" {
		t.Fatalf("header consumed payload: rest %q", rest)
	}
}

func TestStreamHeaderRejects(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":        {},
		"zero length":  {0, 0},
		"too long":     {1, 0},
		"short name":   {0, 10, 'a'},
		"not a target": append([]byte{0, 5}, "hello{}\n"...),
		"no facts":     append([]byte{0, 47}, "outbound_.8080_._.ledger.demo.svc.clusterset.local"[:47]...),
	} {
		if _, _, err := ReadStreamHeader(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "stream header") {
			t.Errorf("%s: error %q does not say what it read", name, err)
		}
	}
}

func FuzzReadStreamHeader(f *testing.F) {
	facts, _ := EncodeFacts(Facts{Classes: []string{"pii-eu"}})
	f.Add(EncodeStreamHeader(Target{Namespace: "demo", Name: "ledger", Port: 8080}, facts))
	f.Add([]byte{0, 3, 'a', 'b', 'c', '\n'})
	traced, _ := EncodeFacts(Facts{Classes: []string{"pii-eu"}, TraceParent: testTraceParent, TraceState: "vendor=abc"})
	f.Add(EncodeStreamHeader(Target{Namespace: "demo", Name: "ledger", Port: 8080}, traced))
	f.Fuzz(func(t *testing.T, b []byte) {
		tg, ff, err := ReadStreamHeader(bytes.NewReader(b))
		if err != nil {
			return
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
	_, f, err := ReadStreamHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	if f.TraceParent != testTraceParent || f.TraceState != "vendor=abc" || len(f.Classes) != 1 {
		t.Fatalf("read back %+v", f)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "payload" {
		t.Fatalf("header consumed payload: rest %q", rest)
	}

	// A peer that does not trace sends no members at all.
	plain, err := EncodeFacts(Facts{Classes: []string{"pii-eu"}})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain, []byte("trace")) {
		t.Fatalf("facts without a trace context carry %q", plain)
	}
	if _, f, err = ReadStreamHeader(bytes.NewReader(EncodeStreamHeader(tg, plain))); err != nil || f.TraceParent != "" || f.TraceState != "" {
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
