package state

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestCloseStopsRetryLoops: a voter that can reach none of its peers
// keeps announcing and discovering with backoff, and a write keeps
// retrying for want of a leader; Close ends all of them and leaves no
// goroutine behind.
func TestCloseStopsRetryLoops(t *testing.T) {
	base := runtime.NumGoroutine()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Voter = true
	cfg.BootstrapExpect = 3
	cfg.Join = []string{"127.0.0.1:1", "127.0.0.1:2"}
	_, trans := raft.NewInmemTransport("self")
	var dials atomic.Int32
	retrying := make(chan struct{})
	s, err := Open(cfg, Options{
		Name: "n0", TrustDomain: "strait.local", ControlAddr: "127.0.0.1:3", Transport: trans,
		Dial: func(addr string) (Control, error) {
			if dials.Add(1) == 8 {
				close(retrying)
			}
			return nil, errors.New("unreachable in this test")
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(context.Background(), &WriteRequest{Kind: KindPolicy, Key: "eu", Op: OpPut, Value: testPolicy})
		wrote <- err
	}()
	select {
	case <-retrying: // the loops have failed, waited and tried again
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not try its peers")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wrote:
		if !errors.Is(err, ErrNoLeader) {
			t.Fatalf("write during shutdown: %v, want ErrNoLeader", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write retrying for a leader did not end with the store")
	}
	trans.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
