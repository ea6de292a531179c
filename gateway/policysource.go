package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/straitmesh/strait/sovereignty"
)

// PolicySource supplies the residency policy a gateway enforces. It is the
// seam between the data plane and wherever policies are kept: a file
// (FilePolicySource), memory (MemoryPolicySource, for labs and tests), or
// the federation's Raft routing state.
//
// Contract:
//   - Current returns the policy in force and its version. The engine must
//     come from sovereignty.Compile (so it was validated); nil means no
//     policy has been accepted yet, and the gateway then refuses every
//     flow rather than guess.
//   - Versions only grow: each accepted change has a higher version than
//     the one before (the Raft index; a counter for files). Audit records
//     cite it.
//   - An update that fails validation leaves Current unchanged. A source
//     reports such refusals by implementing PolicyRejections.
//   - Changes receives a value (coalesced, never blocking the sender)
//     after every change of Current and every refused update.
type PolicySource interface {
	Current() (engine *sovereignty.Engine, version uint64)
	Changes() <-chan struct{}
}

// PolicyRejections is implemented by a PolicySource that can refuse
// updates. LastRejection returns a sequence number that grows with each
// refused update (0: none yet) and that update's error; the gateway
// audits each new one.
type PolicyRejections interface {
	// LastRejection returns the count of refused updates, the version in
	// force when the last was refused, and why.
	LastRejection() (seq, inForce uint64, err error)
}

// PolicyOrigin is implemented by a PolicySource that can say where its
// policies come from ("file:/etc/strait/residency.yaml", "raft").
type PolicyOrigin interface {
	Origin() string
}

type versioned struct {
	engine  *sovereignty.Engine
	version uint64
}

// notify wakes a Changes channel without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// MemoryPolicySource is a PolicySource held in memory. Set installs a new
// policy with the next version. It stands in for the routing state in labs
// and tests.
type MemoryPolicySource struct {
	mu      sync.Mutex
	cur     atomic.Pointer[versioned]
	changes chan struct{}
	rejSeq  uint64
	rejAt   uint64
	rejErr  error
}

// NewMemoryPolicySource returns a source holding engine as version 1; a
// nil engine starts it empty.
func NewMemoryPolicySource(engine *sovereignty.Engine) *MemoryPolicySource {
	s := &MemoryPolicySource{changes: make(chan struct{}, 1)}
	if engine != nil {
		s.cur.Store(&versioned{engine, 1})
	}
	return s
}

// Current implements PolicySource.
func (s *MemoryPolicySource) Current() (*sovereignty.Engine, uint64) {
	if v := s.cur.Load(); v != nil {
		return v.engine, v.version
	}
	return nil, 0
}

// Changes implements PolicySource.
func (s *MemoryPolicySource) Changes() <-chan struct{} { return s.changes }

// Set installs engine with the next version and returns that version.
func (s *MemoryPolicySource) Set(engine *sovereignty.Engine) uint64 {
	s.mu.Lock()
	var next uint64 = 1
	if v := s.cur.Load(); v != nil {
		next = v.version + 1
	}
	s.cur.Store(&versioned{engine, next})
	s.mu.Unlock()
	notify(s.changes)
	return next
}

// SetDocument compiles doc and installs it; an invalid document is
// refused, reported through LastRejection, and the current policy stays.
func (s *MemoryPolicySource) SetDocument(name string, doc []byte) (uint64, error) {
	e, err := sovereignty.Compile(name, doc)
	if err != nil {
		s.mu.Lock()
		s.rejSeq++
		s.rejErr = err
		if v := s.cur.Load(); v != nil {
			s.rejAt = v.version
		}
		s.mu.Unlock()
		notify(s.changes)
		return 0, err
	}
	return s.Set(e), nil
}

// LastRejection implements PolicyRejections.
func (s *MemoryPolicySource) LastRejection() (uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejSeq, s.rejAt, s.rejErr
}

// Origin implements PolicyOrigin.
func (s *MemoryPolicySource) Origin() string { return "memory" }

// FilePolicySource reads the policy from a file. It starts only with a
// valid policy; Reload (SIGHUP) and Watch (file changes) install a changed
// file when it is valid and keep the last good policy when it is not.
// Versions count the distinct documents installed since start, from 1.
type FilePolicySource struct {
	path    string
	log     *slog.Logger
	mu      sync.Mutex // serialises reloads
	cur     atomic.Pointer[versioned]
	changes chan struct{}
	rejSeq  uint64
	rejAt   uint64
	rejErr  error
}

// NewFilePolicySource loads and validates the policy at path. An invalid
// policy is an error that wraps *sovereignty.Error.
func NewFilePolicySource(path string, log *slog.Logger) (*FilePolicySource, error) {
	if log == nil {
		log = slog.Default()
	}
	e, err := sovereignty.LoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("residency policy: %w", err)
	}
	s := &FilePolicySource{path: path, log: log, changes: make(chan struct{}, 1)}
	s.cur.Store(&versioned{e, 1})
	return s, nil
}

// Current implements PolicySource.
func (s *FilePolicySource) Current() (*sovereignty.Engine, uint64) {
	v := s.cur.Load()
	return v.engine, v.version
}

// Changes implements PolicySource.
func (s *FilePolicySource) Changes() <-chan struct{} { return s.changes }

// Origin implements PolicyOrigin.
func (s *FilePolicySource) Origin() string { return "file:" + s.path }

// LastRejection implements PolicyRejections.
func (s *FilePolicySource) LastRejection() (uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejSeq, s.rejAt, s.rejErr
}

// Reload reads the file again. An unchanged document is a no-op; a valid
// changed one becomes the next version; an invalid one is refused (the
// error is returned and reported through LastRejection) and the last good
// policy stays in force.
func (s *FilePolicySource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := sovereignty.LoadFile(s.path)
	cur := s.cur.Load()
	if err != nil {
		s.rejSeq++
		s.rejErr = err
		s.rejAt = cur.version
		s.log.Error("residency policy update refused; the last good policy stays in force",
			"file", s.path, "version", cur.version, "err", err)
		notify(s.changes)
		return fmt.Errorf("reload residency policy: %w", err)
	}
	if e.Digest() == cur.engine.Digest() {
		return nil
	}
	s.cur.Store(&versioned{e, cur.version + 1})
	notify(s.changes)
	return nil
}

// Watch reloads the file whenever its directory changes (edits, renames,
// Kubernetes ConfigMap symlink swaps), after quiet for debounce, until ctx
// ends.
func (s *FilePolicySource) Watch(ctx context.Context, debounce time.Duration) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch residency policy %s: %w", s.path, err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("watch residency policy %s: %w", s.path, err)
	}
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("watching residency policy", "file", s.path, "err", err)
		case <-fire:
			fire = nil
			_ = s.Reload() // logged and reported by Reload
		}
	}
}

var errNoPolicy = errors.New("residency: no policy in force yet; refusing every flow until one is")
