package tunnel

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

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
