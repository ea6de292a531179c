package yamux

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
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

// TestLazyAck: an accepted stream's ACK rides on its first frame, so the
// opener's backlog slot stays taken until the answer, and the stream's
// window is granted right behind it.
func TestLazyAck(t *testing.T) {
	conf := testConfNoKeepAlive()
	conf.LazyAck = true
	conf.OpenBacklog = 1
	conf.InitialStreamWindowSize = 1 << 20
	conf.MaxStreamWindowSize = 1 << 20
	client, server := testClientServerConfig(conf)
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
	if _, err := io.ReadFull(s, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	// Accepted and read, not answered: no ACK yet, the one slot is taken.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = client.OpenStream(ctx)
	cancel()
	if err == nil {
		t.Fatal("a second stream opened before the first was answered: its ACK went out early")
	}
	if _, err := s.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.OpenStream(ctx); err != nil {
		t.Fatalf("open after the answer: %v", err)
	}
	// The grant came with the answer: the whole configured window, the
	// five bytes read by then included.
	want := uint32(1 << 20)
	deadline := time.Now().Add(2 * time.Second)
	for atomic.LoadUint32(&c.sendWindow) != want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := atomic.LoadUint32(&c.sendWindow); got != want {
		t.Errorf("send window after the answer %d, want %d", got, want)
	}
}

// TestLazyAckReader: an accepted stream that only reads still opens its
// window once it has taken an eighth of the initial one, so a sender
// never waits on an answer that does not come.
func TestLazyAckReader(t *testing.T) {
	conf := testConfNoKeepAlive()
	conf.LazyAck = true
	client, server := testClientServerConfig(conf)
	defer client.Close()
	defer server.Close()

	data := make([]byte, 4<<20)
	rand.Read(data)
	c, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d sent", len(got), len(data))
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
}

// gatedConn holds its first write until open is closed (entered says
// it is held) and records how many data frames each write carried.
type gatedConn struct {
	net.Conn
	entered chan struct{}
	open    chan struct{}
	first   atomic.Bool
	data    chan int
}

func (g *gatedConn) gate(frames ...[]byte) {
	if g.first.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.open
	}
	n := 0
	for _, f := range frames {
		if f[1] == typeData {
			n++
		}
	}
	g.data <- n
}

func (g *gatedConn) Write(p []byte) (int, error) {
	g.gate(p)
	return g.Conn.Write(p)
}

func (g *gatedConn) WriteFrames(frames [][]byte) (int, error) {
	g.gate(frames...)
	n := 0
	for _, f := range frames {
		m, err := g.Conn.Write(f)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestSendLoopBatches: frames queued while the send loop writes go out
// together in its next write, in order.
func TestSendLoopBatches(t *testing.T) {
	conf := testConfNoKeepAlive()
	c1, c2 := testConn()
	gc := &gatedConn{Conn: c1, entered: make(chan struct{}), open: make(chan struct{}), data: make(chan int, 64)}
	client, _ := Client(gc, conf, nil)
	server, _ := Server(c2, conf, nil)
	defer client.Close()
	defer server.Close()

	c, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	<-gc.entered // the session's first write is held
	for _, part := range []string{"one", "two", "three"} {
		if _, err := c.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	close(gc.open)
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("onetwothree"))
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "onetwothree" {
		t.Fatalf("read %q, %v", got, err)
	}
	var writes []int // data frames per write
	for len(gc.data) > 0 {
		writes = append(writes, <-gc.data)
	}
	withData := 0
	for _, n := range writes {
		if n > 0 {
			withData++
			if n != 3 {
				t.Errorf("a write carried %d of the three data frames queued together", n)
			}
		}
	}
	if withData != 1 {
		t.Errorf("data frames per write %v: want the three queued together in one write", writes)
	}
}

// TestLazyAckBothWays: an accepted stream read and written at once,
// its window granted by its writer (the ACK's frame) and its reader.
func TestLazyAckBothWays(t *testing.T) {
	conf := testConfNoKeepAlive()
	conf.LazyAck = true
	conf.InitialStreamWindowSize = 1 << 20
	conf.MaxStreamWindowSize = 4 << 20
	client, server := testClientServerConfig(conf)
	defer client.Close()
	defer server.Close()

	up, down := make([]byte, 2<<20), make([]byte, 2<<20)
	rand.Read(up)
	rand.Read(down)
	c, err := client.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 4)
	go func() { _, err := c.Write(up); errc <- errors.Join(err, c.CloseWrite()) }()
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, err := s.Write(down); errc <- errors.Join(err, s.CloseWrite()) }()
	var atServer, atClient bytes.Buffer
	go func() { _, err := s.WriteTo(&atServer); errc <- err }()
	go func() { _, err := c.WriteTo(&atClient); errc <- err }()
	for range 4 {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the transfer both ways did not end")
		}
	}
	if !bytes.Equal(atServer.Bytes(), up) || !bytes.Equal(atClient.Bytes(), down) {
		t.Fatal("the bytes differ")
	}
}

// TestBuffered: Buffered counts what arrived and was not read yet.
func TestBuffered(t *testing.T) {
	client, server := testClientServer()
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
	if _, err := c.Write([]byte(" world")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Buffered() < 11 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := s.Buffered(); got != 11 {
		t.Fatalf("Buffered %d after 11 bytes, want 11", got)
	}
	if _, err := io.ReadFull(s, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if got := s.Buffered(); got != 7 {
		t.Fatalf("Buffered %d after reading 4 of 11, want 7", got)
	}
	if _, err := io.ReadFull(s, make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	if got := s.Buffered(); got != 0 {
		t.Fatalf("Buffered %d after reading everything, want 0", got)
	}
}

// TestStreamGoneWhenEndSeen: once a stream's reader sees the peer's
// end of a stream it had already closed for writing, the session no
// longer counts the stream.
func TestStreamGoneWhenEndSeen(t *testing.T) {
	client, server := testClientServerConfig(testConfNoKeepAlive())
	defer client.Close()
	defer server.Close()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		c, err := client.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		s, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("server read %d, %v; want the client's end", n, err)
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("client read %d, %v; want the server's end", n, err)
		}
		if got := client.NumStreams(); got != 0 {
			t.Fatalf("round %d: the client counts %d streams after both ends closed, want 0", i, got)
		}
		if got := server.NumStreams(); got != 0 {
			t.Fatalf("round %d: the server counts %d streams after both ends closed, want 0", i, got)
		}
	}
}
