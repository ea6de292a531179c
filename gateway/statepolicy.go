package gateway

import (
	"context"
	"fmt"
	"sync"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/sovereignty"
)

// statePolicySource takes the residency policy from the routing state:
// the policy record named name, compiled on every gateway, its version the
// Raft index that wrote it. Until the routing state holds that record the
// fallback (the file policy, or none) is in force. A record that does not
// compile leaves the last good policy in force and is reported as a
// rejection; the control API validates payloads before they reach the
// log, so that is only possible across versions with different rules.
type statePolicySource struct {
	store    *state.Store
	name     string
	fallback PolicySource
	changes  chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}

	mu      sync.Mutex
	eng     *sovereignty.Engine
	version uint64
	seen    uint64 // index of the record last looked at
	rejSeq  uint64
	rejAt   uint64
	rejErr  error
}

func newStatePolicySource(store *state.Store, name string, fallback PolicySource) *statePolicySource {
	ctx, cancel := context.WithCancel(context.Background())
	s := &statePolicySource{store: store, name: name, fallback: fallback, changes: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	s.refresh()
	ch, stop := store.Watch()
	go func() {
		defer close(s.done)
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				if s.refresh() {
					s.notify()
				}
			case <-fallback.Changes():
				s.notify()
			}
		}
	}()
	return s
}

// refresh compiles the policy record if it changed; it reports whether
// anything the gateway sees changed.
func (s *statePolicySource) refresh() bool {
	r, ok := s.store.View().Get(state.KindPolicy, s.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || r.Index == s.seen {
		return false
	}
	s.seen = r.Index
	eng, err := sovereignty.Compile(fmt.Sprintf("policy/%s@%d", s.name, r.Index), []byte(r.Value))
	if err != nil {
		s.rejSeq++
		s.rejErr = err
		s.rejAt = s.version
		return true
	}
	s.eng, s.version = eng, r.Index
	return true
}

func (s *statePolicySource) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Current implements PolicySource.
func (s *statePolicySource) Current() (*sovereignty.Engine, uint64) {
	s.mu.Lock()
	eng, v := s.eng, s.version
	s.mu.Unlock()
	if eng != nil {
		return eng, v
	}
	return s.fallback.Current()
}

// Changes implements PolicySource.
func (s *statePolicySource) Changes() <-chan struct{} { return s.changes }

// LastRejection implements PolicyRejections.
func (s *statePolicySource) LastRejection() (uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejSeq, s.rejAt, s.rejErr
}

// Origin implements PolicyOrigin.
func (s *statePolicySource) Origin() string { return "raft:" + s.name }

func (s *statePolicySource) close() {
	s.cancel()
	<-s.done
}

// validateStatePayload is the routing state's check of residency policies:
// the same compiler every gateway runs, before the write reaches the log.
func validateStatePayload(kind string, payload []byte) error {
	if kind != state.KindPolicy {
		return nil
	}
	_, err := sovereignty.Compile("policy", payload)
	return err
}
