package record

import (
	"bytes"
	"io"
	"testing"
)

// seedStream is the records a server with fixedConn's keys writes: data,
// a session ticket, a KeyUpdate asking for one back, more data (over
// two records) and close_notify.
func seedStream(tb testing.TB) (stream []byte, ends []int) {
	w, rec := fixedConn(tb, false, nil)
	mark := func() { ends = append(ends, rec.out.Len()) }
	_, err := w.Write([]byte("hello"))
	must(tb, err)
	mark()
	rec.out.Write(w.out.seal(nil, []byte{hsNewSessionTicket, 0, 0, 4, 1, 2, 3, 4}, typeHandshake))
	mark()
	must(tb, w.sendKeyUpdate(true))
	mark()
	_, err = w.Write(randomBytes(5, 20000))
	must(tb, err)
	mark()
	must(tb, w.CloseWrite())
	return rec.out.Bytes(), ends
}

// FuzzRead feeds arbitrary bytes to a client Conn as what the server
// sent. Read must not panic nor loop: every call returns data or an
// error, and the data is never more than the bytes fed.
func FuzzRead(f *testing.F) {
	stream, ends := seedStream(f)
	for _, e := range ends {
		f.Add(stream[:e], uint16(1000))
	}
	f.Add(stream, uint16(1))
	f.Add(stream, uint16(30000))
	flipped := bytes.Clone(stream)
	flipped[ends[0]+20] ^= 1
	f.Add(flipped, uint16(1000))
	f.Add([]byte{23, 3, 3, 0, 17}, uint16(10))
	f.Fuzz(func(t *testing.T, in []byte, bufLen uint16) {
		r, _ := fixedConn(t, true, bytes.NewReader(in))
		buf := make([]byte, max(1, int(bufLen)))
		total := 0
		for calls := 0; ; calls++ {
			n, err := r.Read(buf)
			total += n
			if err != nil {
				return
			}
			if n == 0 || calls > len(in) || total > len(in) {
				t.Fatalf("read %d, nil after %d calls and %d bytes of %d fed", n, calls, total, len(in))
			}
		}
	})
}

// The seed stream reads back as written, so the seeds reach every branch.
func TestSeedStream(t *testing.T) {
	stream, _ := seedStream(t)
	r, _ := fixedConn(t, true, bytes.NewReader(stream))
	got := readAll(t, r, 7000)
	if want := append([]byte("hello"), randomBytes(5, 20000)...); !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d", len(got), len(want))
	}
	if r.in.updates != 1 || !r.updateWanted.Load() {
		t.Errorf("read key updated %d times, update wanted %v; want 1, true", r.in.updates, r.updateWanted.Load())
	}
	if _, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after close_notify: %v, want io.EOF", err)
	}
}
