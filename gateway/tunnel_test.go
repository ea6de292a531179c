package gateway

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestStreamHeaderRoundTrip(t *testing.T) {
	tg := Target{Namespace: "demo", Name: "ledger", Port: 8080}
	facts, err := encodeFacts(flowFacts{Classes: []string{"pii-eu"}, Regions: []string{"eu-west"}, Restricted: true, Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	b := append(encodeStreamHeader(tg, facts), "payload"...)
	r := bytes.NewReader(b)
	got, f, err := readStreamHeader(r)
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
		if _, _, err := readStreamHeader(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "stream header") {
			t.Errorf("%s: error %q does not say what it read", name, err)
		}
	}
}

func FuzzReadStreamHeader(f *testing.F) {
	facts, _ := encodeFacts(flowFacts{Classes: []string{"pii-eu"}})
	f.Add(encodeStreamHeader(Target{Namespace: "demo", Name: "ledger", Port: 8080}, facts))
	f.Add([]byte{0, 3, 'a', 'b', 'c', '\n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		tg, _, err := readStreamHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if tg.Port < 1 || tg.Port > 65535 || tg.Name == "" || tg.Namespace == "" {
			t.Fatalf("accepted target %+v", tg)
		}
	})
}
