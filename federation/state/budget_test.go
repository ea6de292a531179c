package state

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/connlimit"
)

// closedWithin reports whether the peer closed c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestRaftStreamHandshakesBeforeRaft checks the Raft stream layer: a
// connection reaches Raft (Accept) only once its mTLS handshake finished;
// silent ones and foreign certificates never do, and silent ones are
// closed at the handshake deadline; Close does not wait for handshakes
// under way.
func TestRaftStreamHandshakesBeforeRaft(t *testing.T) {
	f := newTestFed(t)
	id := f.bundle(identity.ID{Role: identity.RoleVoter, Region: "r0", Cluster: "n0"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	sources := connlimit.NewSources(1000)
	s := newTLSStream(connlimit.NewListener(ln, connlimit.Config{HandshakeTimeout: time.Minute, Sources: sources}),
		ln.Addr(), id.ServerConfig(), id.ClientConfig("raft.strait"), timeout, slog.New(slog.DiscardHandler))
	defer s.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	start := time.Now()
	var silent []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	foreignCA, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := foreignCA.Issue("r9", "intruder", time.Hour)
	foreign, _ := identity.NewBundle(cert, f.ca.Roots())
	if c, err := (&tlsStream{client: foreign.ClientConfig("raft.strait")}).Dial(raft0(ln), time.Second); err == nil {
		c.Read(make([]byte, 1)) // the server's verdict arrives after the client's handshake
		c.Close()
	}
	peer, err := (&tlsStream{client: f.bundle(identity.ID{Role: identity.RoleVoter, Region: "r1", Cluster: "n1"}).ClientConfig("raft.strait")}).Dial(raft0(ln), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	select {
	case c := <-accepted:
		if c.RemoteAddr().String() != peer.LocalAddr().String() {
			t.Fatalf("accepted %s, want the federation peer %s", c.RemoteAddr(), peer.LocalAddr())
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a federation peer was not accepted")
	}
	for i, c := range silent {
		if !closedWithin(c, 5*time.Second) {
			t.Fatalf("silent connection %d still open", i)
		}
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("silent connections closed after %s, before the handshake deadline %s", d, timeout)
	}
	select {
	case c := <-accepted:
		t.Fatalf("Raft was handed %s, which never finished a handshake", c.RemoteAddr())
	default:
	}
	if n := sources.Handshaking(peer.LocalAddr()); n != 0 {
		t.Fatalf("%d handshakes still counted for loopback", n)
	}

	// Close with handshakes under way returns at once.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s2 := newTLSStream(ln2, ln2.Addr(), id.ServerConfig(), id.ClientConfig("raft.strait"), time.Minute, slog.New(slog.DiscardHandler))
	for range 10 {
		c, err := net.Dial("tcp", ln2.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitPending := time.Now().Add(5 * time.Second)
	for {
		s2.mu.Lock()
		n := len(s2.pending)
		s2.mu.Unlock()
		if n == 10 || time.Now().After(waitPending) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	closed := time.Now()
	s2.Close()
	if d := time.Since(closed); d > 2*time.Second {
		t.Fatalf("Close took %s with handshakes under way", d)
	}
	if _, err := s2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func raft0(ln net.Listener) raft.ServerAddress { return raft.ServerAddress(ln.Addr().String()) }

// TestControlServerLimits checks the control server's explicit limits: a
// request over maxControlRecv is refused before it is read, one connection
// carries at most maxControlStreams calls at once (more wait in the
// client), and a connection in a connection budget is told when its TLS
// handshake finished.
func TestControlServerLimits(t *testing.T) {
	f := newTestFed(t)
	n := f.add(true, 1)
	f.waitMembers()
	ctx := ctx10(t)

	c := f.client(n)
	big := strings.Repeat("x", maxControlRecv)
	_, err := c.Write(ctx, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "big", Value: big})
	var re *remoteError
	if !errors.As(err, &re) || re.code != codes.ResourceExhausted {
		t.Fatalf("write of %d bytes: %v; want ResourceExhausted", len(big), err)
	}

	hc := healthpb.NewHealthClient(f.client(n).cc)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var watches []healthpb.Health_WatchClient
	for i := range maxControlStreams {
		w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		watches = append(watches, w)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	w, err := hc.Watch(short, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call %d on one connection: %v; want it to wait (DeadlineExceeded)", maxControlStreams+1, err)
	}
	cancel()
	for _, w := range watches {
		w.Recv()
	}

	// A budgeted listener is told when the TLS handshake finished.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sources := connlimit.NewSources(10)
	bl := connlimit.NewListener(ln, connlimit.Config{Max: 10, HandshakeTimeout: time.Minute, Sources: sources})
	srv := NewControlServer(n.store, n.id)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(bl)
	}()
	defer func() {
		srv.Stop()
		wg.Wait()
	}()
	cc, err := DialControl(ln.Addr().String(), f.bundle(identity.ID{Role: identity.RoleOperator, Name: "ops"}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := cc.Peers(ctx, &PeersRequest{}); err != nil {
		t.Fatal(err)
	}
	if bl.Open() != 1 || sources.Handshaking(ln.Addr()) != 0 {
		t.Fatalf("after a call: %d open, %d handshaking; want 1 and 0", bl.Open(), sources.Handshaking(ln.Addr()))
	}
}
