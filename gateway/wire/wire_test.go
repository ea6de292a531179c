package wire

import (
	"bytes"
	"errors"
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
	f.Fuzz(func(t *testing.T, b []byte) {
		tg, _, err := ReadStreamHeader(bytes.NewReader(b))
		if err != nil {
			return
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
