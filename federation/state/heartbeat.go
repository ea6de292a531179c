package state

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// errClosing answers a heartbeat that arrives while the store closes.
var errClosing = errors.New("routing state is closing")

// heartbeatGate keeps Raft's heartbeat fast path off the log store once
// the store closes. The transport runs heartbeats on its own goroutines,
// outside those Raft's Shutdown waits for; a heartbeat that passed Raft's
// shutdown check just before and then saves a newer term into the closed
// log store makes Raft panic ("failed to save current term"). close
// waits for heartbeats being handled and answers any later one with an
// error.
type heartbeatGate struct {
	raft.Transport
	mu     sync.RWMutex
	closed bool
}

// gateHeartbeats wraps t, keeping pre-vote when t has it.
func gateHeartbeats(t raft.Transport) (raft.Transport, *heartbeatGate) {
	g := &heartbeatGate{Transport: t}
	if p, ok := t.(raft.WithPreVote); ok {
		return &preVoteGate{heartbeatGate: g, pre: p}, g
	}
	return g, g
}

func (g *heartbeatGate) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		g.Transport.SetHeartbeatHandler(nil)
		return
	}
	g.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.closed {
			rpc.Respond(nil, errClosing)
			return
		}
		cb(rpc)
	})
}

// close returns once no heartbeat is being handled; none is after.
func (g *heartbeatGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Close closes the transport when it can be (Raft's Shutdown does).
func (g *heartbeatGate) Close() error {
	if c, ok := g.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// preVoteGate is a heartbeatGate over a transport with pre-vote.
type preVoteGate struct {
	*heartbeatGate
	pre raft.WithPreVote
}

func (g *preVoteGate) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return g.pre.RequestPreVote(id, target, args, resp)
}
