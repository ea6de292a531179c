package gateway

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
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

// recordingConn records each write it gets.
type recordingConn struct {
	net.Conn
	writes [][]byte
}

func (r *recordingConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func frameHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeader)
	h[0], h[1] = 0, typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestFrameCoalescerJoinsSmallDataFrames(t *testing.T) {
	rec := &recordingConn{}
	fc := &frameCoalescer{Conn: rec}
	small := bytes.Repeat([]byte("s"), 64)
	big := bytes.Repeat([]byte("b"), smallFrame+1)
	var want [][]byte
	for _, step := range []struct {
		hdr  []byte
		body []byte
		join bool
	}{
		{frameHeader(yamuxData, uint32(len(small))), small, true},
		{frameHeader(1, 1<<20), nil, false},                       // window update: no body
		{frameHeader(2, 7), nil, false},                           // ping
		{frameHeader(yamuxData, uint32(len(big))), big, false},    // too big for one record
		{frameHeader(yamuxData, 0), nil, false},                   // flags only (FIN)
		{frameHeader(yamuxData, uint32(len(small))), small, true}, // again
	} {
		if n, err := fc.Write(step.hdr); n != len(step.hdr) || err != nil {
			t.Fatalf("header write %d %v", n, err)
		}
		if step.body != nil {
			if n, err := fc.Write(step.body); n != len(step.body) || err != nil {
				t.Fatalf("body write %d %v", n, err)
			}
		}
		switch {
		case step.join:
			want = append(want, append(append([]byte(nil), step.hdr...), step.body...))
		case step.body != nil:
			want = append(want, step.hdr, step.body)
		default:
			want = append(want, step.hdr)
		}
	}
	if len(rec.writes) != len(want) {
		t.Fatalf("%d writes, want %d", len(rec.writes), len(want))
	}
	for i := range want {
		if !bytes.Equal(rec.writes[i], want[i]) {
			t.Fatalf("write %d: %d bytes, want %d", i, len(rec.writes[i]), len(want[i]))
		}
	}
}
