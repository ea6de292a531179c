package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/straitmesh/strait/gateway"
)

// hugeHead is 64 MiB, a thousand times the head limit (64 KiB).
const hugeHead = 64 << 20

// streamBytes writes n bytes of b repeated from one small buffer, and
// stops at the first error (the gateway closes once it has answered).
func streamBytes(w io.Writer, b byte, n int) {
	chunk := bytes.Repeat([]byte{b}, 32<<10)
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		n -= k
	}
}

// heapWatch samples the heap until stopped and returns the largest
// HeapAlloc seen.
func heapWatch() (stop func() uint64) {
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// TestHugeRequestHeadCostsTheLimit sends 64 MiB request heads to the
// CONNECT/proxy port, written from one 32 KiB buffer so that the client
// costs nothing: one 64 MiB field, a million small fields, a 64 MiB
// request line, and an HTTP/2 (prior knowledge) header block of 64 MiB.
// Each is refused (431, or the HTTP/2 connection closed) and the
// gateway allocates less than 8 MiB in all while it reads it (about the
// head limit, 64 KiB, in fact).
func TestHugeRequestHeadCostsTheLimit(t *testing.T) {
	g, err := startGateway(t, gateway.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	const line = "GET http://ledger.demo.svc.clusterset.local:8080/ HTTP/1.1\r\nHost: ledger.demo.svc.clusterset.local:8080\r\n"
	for _, tc := range []struct {
		name string
		send func(w io.Writer)
		h2   bool
	}{
		{"one 64 MiB field", func(w io.Writer) {
			io.WriteString(w, line+"X-Big: ")
			streamBytes(w, 'a', hugeHead)
		}, false},
		{"a million small fields", func(w io.Writer) {
			io.WriteString(w, line)
			small := bytes.Repeat([]byte("X-A: b\r\n"), 4<<10)
			for sent := 0; sent < hugeHead; sent += len(small) {
				if _, err := w.Write(small); err != nil {
					return
				}
			}
		}, false},
		{"a 64 MiB request line", func(w io.Writer) {
			io.WriteString(w, "GET http://ledger.demo.svc.clusterset.local:8080/")
			streamBytes(w, 'a', hugeHead)
		}, false},
		{"a 64 MiB HTTP/2 field", sendHugeH2Field, true},
		{"a million small HTTP/2 fields", sendManyH2Fields, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.ConnectAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			stop := heapWatch()
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				tc.send(c)
			}()
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			answer := readAnswer(t, c, tc.h2)
			<-sent
			peak := stop()
			runtime.ReadMemStats(&after)
			growth := int64(peak) - int64(before.HeapAlloc)
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: heap %.1f MiB before, peak %.1f MiB (+%.2f MiB); %.2f MiB allocated in all while it was read",
				answer, mib(before.HeapAlloc), mib(peak), float64(growth)/(1<<20), mib(allocated))
			if tc.h2 {
				if answer != "431" && answer != "closed" {
					t.Fatalf("answered %q, want 431 or the connection closed", answer)
				}
			} else if answer != "431" {
				t.Fatalf("answered %q, want 431", answer)
			}
			if growth > 8<<20 || allocated > 8<<20 {
				t.Fatalf("heap grew by %.1f MiB, %.1f MiB allocated, reading a %d MiB head", float64(growth)/(1<<20), mib(allocated), hugeHead>>20)
			}
		})
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// readAnswer returns the status code the gateway answered with, or
// "closed" when it closed the connection without one.
func readAnswer(t *testing.T, c net.Conn, h2 bool) string {
	t.Helper()
	if !h2 {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "closed"
		}
		resp.Body.Close()
		return strings.Fields(resp.Status)[0]
	}
	fr := http2.NewFramer(io.Discard, c)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "closed"
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			// :status 431 is in the static table (index 8 is 200; 431 is
			// sent as a literal): look for its digits.
			if bytes.Contains(f.HeaderBlockFragment(), []byte("431")) {
				return "431"
			}
			return "headers"
		case *http2.GoAwayFrame:
			return "closed"
		case *http2.RSTStreamFrame:
			return "closed"
		}
	}
}

// sendH2Head speaks HTTP/2 with prior knowledge and opens a stream whose
// header block is the request's pseudo-header fields, then head, then
// fill repeated to 64 MiB, in CONTINUATION frames written from one small
// buffer.
func sendH2Head(w io.Writer, head []byte, fill []byte) {
	io.WriteString(w, http2.ClientPreface)
	fr := http2.NewFramer(w, nil)
	if fr.WriteSettings() != nil {
		return
	}
	const authority = "ledger.demo.svc.clusterset.local:8080"
	first := []byte{0x82, 0x86, 0x84, 0x41, byte(len(authority))} // :method GET, :scheme http, :path /, :authority literal
	first = append(append(first, authority...), head...)
	if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}) != nil {
		return
	}
	chunk := bytes.Repeat(fill, (16<<10)/len(fill))
	var hdr [9]byte
	for left := hugeHead; left > 0; left -= len(chunk) {
		k := min(left, len(chunk))
		binary.BigEndian.PutUint32(hdr[0:4], uint32(k)<<8|0x09) // length, type CONTINUATION
		hdr[4] = 0
		if left == k {
			hdr[4] = 0x4 // END_HEADERS
		}
		binary.BigEndian.PutUint32(hdr[5:9], 1)
		if _, err := w.Write(hdr[:]); err != nil {
			return
		}
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
	}
}

// sendHugeH2Field sends one 64 MiB field: a literal without indexing,
// name "x-big", the value's length as an HPACK integer (7-bit prefix, no
// Huffman), then the value.
func sendHugeH2Field(w io.Writer) {
	head := []byte{0x00, 5}
	head = append(head, "x-big"...)
	n := hugeHead - 127
	head = append(head, 0x7f)
	for n >= 128 {
		head = append(head, byte(n%128+128))
		n /= 128
	}
	sendH2Head(w, append(head, byte(n)), []byte{'a'})
}

// sendManyH2Fields sends 64 MiB of small fields ("x-a: b", literals
// without indexing).
func sendManyH2Fields(w io.Writer) {
	sendH2Head(w, nil, []byte{0x00, 3, 'x', '-', 'a', 1, 'b'})
}
