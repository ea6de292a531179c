package yamux

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// chunkReader gives its data in reads of varying sizes.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := r.sizes[r.i%len(r.sizes)]
	if n > len(p) {
		n = len(p)
	}
	if n > len(r.data) {
		n = len(r.data)
	}
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// slowWriter takes each write after a pause, so the sender runs into the
// window.
type slowWriter struct {
	bytes.Buffer
	pause  time.Duration
	writes int
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes%16 == 0 {
		time.Sleep(w.pause)
	}
	return w.Buffer.Write(p)
}

// TestReadFromWriteTo moves data with ReadFrom on one end and WriteTo on
// the other, with a window smaller than the data: the receiver would
// reset the stream if ReadFrom ever sent past the window.
func TestReadFromWriteTo(t *testing.T) {
	conf := testConfNoKeepAlive()
	conf.InitialStreamWindowSize = 256 << 10
	conf.MaxStreamWindowSize = 256 << 10
	client, server := testClientServerConfig(conf)
	defer client.Close()
	defer server.Close()

	data := make([]byte, 8<<20)
	rand.Read(data)
	got := &slowWriter{pause: time.Millisecond}
	done := make(chan error, 1)
	go func() {
		s, err := server.AcceptStream()
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		n, err := s.WriteTo(got)
		if err == nil && n != int64(len(data)) {
			err = errors.New("WriteTo returned a short count")
		}
		done <- err
	}()
	s, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.ReadFrom(&chunkReader{data: data, sizes: []int{1, 7000, 300 << 10, 64 << 10, 12}})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, len(data))
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WriteTo did not end")
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("received %d bytes that differ from the %d sent", got.Len(), len(data))
	}
}

// TestWriteToAfterRead: WriteTo takes over a stream partly read with Read
// and gives the rest without losing or repeating a byte.
func TestWriteToAfterRead(t *testing.T) {
	client, server := testClientServerConfig(testConfNoKeepAlive())
	defer client.Close()
	defer server.Close()
	data := make([]byte, 1<<20)
	rand.Read(data)
	go func() {
		s, err := client.OpenStream(context.Background())
		if err != nil {
			return
		}
		s.Write(data)
		s.CloseWrite()
	}()
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1000)
	if _, err := io.ReadFull(s, head); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	if _, err := s.WriteTo(&rest); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(head, rest.Bytes()...), data) {
		t.Fatal("stream differs after Read then WriteTo")
	}
}

// TestWriteToReset: a reset stream ends WriteTo with the reset error, and
// a writer's error ends it with that error.
func TestWriteToReset(t *testing.T) {
	client, server := testClientServerConfig(testConfNoKeepAlive())
	defer client.Close()
	defer server.Close()
	c, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("broken writer")
	if _, err := s.WriteTo(failWriter{broken}); !errors.Is(err, broken) {
		t.Fatalf("WriteTo to a failing writer = %v, want %v", err, broken)
	}
	c.Reset()
	if _, err := s.WriteTo(io.Discard); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("WriteTo on a reset stream = %v, want %v", err, ErrStreamReset)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// TestReadFromClosed: ReadFrom on a stream closed for writing fails at
// once and says why; a reader's error comes back as it is.
func TestReadFromClosed(t *testing.T) {
	client, server := testClientServerConfig(testConfNoKeepAlive())
	defer client.Close()
	defer server.Close()
	c, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("broken reader")
	if _, err := c.ReadFrom(io.MultiReader(bytes.NewReader([]byte("abc")), failReader{broken})); !errors.Is(err, broken) {
		t.Fatalf("ReadFrom a failing reader = %v, want %v", err, broken)
	}
	c.CloseWrite()
	if _, err := c.ReadFrom(bytes.NewReader([]byte("x"))); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("ReadFrom after CloseWrite = %v, want %v", err, ErrStreamClosed)
	}
}

type failReader struct{ err error }

func (r failReader) Read([]byte) (int, error) { return 0, r.err }

// TestWindowUpdateInterval: a reader that has taken less than half a
// window sends an update once WindowUpdateInterval has passed, opening
// the sender's window by what it took and no more; without the interval
// the window stays shut until half of it is read.
func TestWindowUpdateInterval(t *testing.T) {
	for _, every := range []time.Duration{0, 10 * time.Millisecond} {
		conf := testConfNoKeepAlive()
		conf.InitialStreamWindowSize = 256 << 10
		conf.MaxStreamWindowSize = 256 << 10
		conf.WindowUpdateInterval = every
		client, server := testClientServerConfig(conf)
		c, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(make([]byte, 100<<10)); err != nil {
			t.Fatal(err)
		}
		s, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 10<<10)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		want := uint32(256<<10 - 100<<10)
		if every > 0 {
			want += 10<<10 + 1
		}
		deadline := time.Now().Add(2 * time.Second)
		for atomic.LoadUint32(&c.sendWindow) != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := atomic.LoadUint32(&c.sendWindow); got != want {
			t.Errorf("interval %v: send window %d, want %d", every, got, want)
		}
		client.Close()
		server.Close()
	}
}
