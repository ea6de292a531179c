package state

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatGate: over real TCP transports on loopback, a heartbeat
// being handled holds the gate's close until it is done, and a heartbeat
// after close is answered with an error without reaching the handler, so
// a closing store's log is never written by one.
func TestHeartbeatGate(t *testing.T) {
	recvT, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer recvT.Close()
	sendT, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer sendT.Close()
	recv, gate := gateHeartbeats(recvT)
	if _, ok := recv.(raft.WithPreVote); !ok {
		t.Fatal("the gate hid the transport's pre-vote")
	}
	entered, release := make(chan struct{}, 2), make(chan struct{})
	recv.SetHeartbeatHandler(func(rpc raft.RPC) {
		entered <- struct{}{}
		<-release
		rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
	})
	heartbeat := func() (*raft.AppendEntriesResponse, error) {
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte(sendT.LocalAddr())}, Term: 7}
		err := sendT.AppendEntries("a", recv.LocalAddr(), req, &resp)
		return &resp, err
	}

	first := make(chan error, 1)
	go func() {
		resp, err := heartbeat()
		if err == nil && !resp.Success {
			err = io.ErrUnexpectedEOF
		}
		first <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the heartbeat did not reach the handler")
	}
	closed := make(chan struct{})
	go func() {
		gate.close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("close returned while a heartbeat was being handled")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the heartbeat handled before close: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return after the heartbeat was handled")
	}

	if _, err := heartbeat(); err == nil || !strings.Contains(err.Error(), errClosing.Error()) {
		t.Fatalf("a heartbeat after close: %v, want %q", err, errClosing)
	}
	select {
	case <-entered:
		t.Fatal("a heartbeat after close reached the handler")
	default:
	}
}
