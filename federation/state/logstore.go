package state

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// logStore keeps Raft's log in raft-wal without ever truncating raft-wal's
// tail. raft-wal v0.4.0 marks a tail segment it truncates as sealed without
// writing its index block, and then cannot reopen it (hashicorp/raft-wal
// issue 31); Raft truncates the tail whenever a follower's log conflicts
// with a new leader's, which partitions make routine.
//
// So raft-wal only ever appends and drops prefixes. Each raft-wal entry
// stores the Raft index it holds in front of its data; Raft's log is the
// sequence of runs those indexes form: an entry whose Raft index does not
// follow the previous one starts a new run that replaces every entry at
// and above it (a tail truncation) or, if it leaves a gap, everything
// before it (the log was emptied for a snapshot). Entries below a
// persisted floor were deleted from the head. Reopening replays the same
// rules over what raft-wal holds.
//
// A tail truncation is not written down by itself: until new entries
// supersede them, the truncated entries come back after a restart, which
// is the state before the truncation. Raft allows that: a follower
// acknowledges nothing before the new entries are stored.
type logStore struct {
	w *wal.WAL

	mu   sync.Mutex
	runs []logRun // live ranges of Raft indexes, ascending
}

// logRun is Raft indexes first..last, stored from raft-wal index phys on.
type logRun struct{ first, last, phys uint64 }

// floorKey holds the lowest Raft index not deleted; startKey the raft-wal
// index a reopen replays from (raft-wal may keep entries it was asked to
// drop until their segment goes).
var (
	floorKey = []byte("strait-log-floor")
	startKey = []byte("strait-log-start")
)

var (
	_ raft.LogStore          = (*logStore)(nil)
	_ raft.StableStore       = (*logStore)(nil)
	_ raft.MonotonicLogStore = (*logStore)(nil)
)

func openLogStore(w *wal.WAL) (*logStore, error) {
	s := &logStore{w: w}
	floor, err := w.GetUint64(floorKey)
	if err != nil {
		return nil, fmt.Errorf("read log floor: %w", err)
	}
	start, err := w.GetUint64(startKey)
	if err != nil {
		return nil, fmt.Errorf("read log start: %w", err)
	}
	first, err := w.FirstIndex()
	if err != nil {
		return nil, err
	}
	first = max(first, start)
	last, err := w.LastIndex()
	if err != nil {
		return nil, err
	}
	if last == 0 {
		return s, nil
	}
	for p := first; p <= last; p++ {
		var l raft.Log
		if err := w.GetLog(p, &l); err != nil {
			return nil, fmt.Errorf("read raft log entry %d: %w", p, err)
		}
		if len(l.Data) < 8 {
			return nil, fmt.Errorf("raft log entry %d: no index header", p)
		}
		ri := binary.BigEndian.Uint64(l.Data)
		if ri < floor {
			continue
		}
		s.place(ri, p)
	}
	return s, nil
}

// place records that Raft index ri is stored at raft-wal index p, the
// latest entry written.
func (s *logStore) place(ri, p uint64) {
	if n := len(s.runs); n > 0 {
		r := &s.runs[n-1]
		switch {
		case ri == r.last+1 && p == r.phys+(r.last-r.first)+1:
			r.last++
			return
		case ri == r.last+1:
			// Follows in Raft's order, not in raft-wal's: a new run.
		case ri > r.last+1:
			s.runs = s.runs[:0] // a gap: everything before was deleted
		default:
			s.cut(ri)
		}
	}
	s.runs = append(s.runs, logRun{first: ri, last: ri, phys: p})
}

// cut drops Raft indexes ri and above.
func (s *logStore) cut(ri uint64) {
	out := s.runs[:0]
	for _, r := range s.runs {
		if r.first >= ri {
			continue
		}
		r.last = min(r.last, ri-1)
		out = append(out, r)
	}
	s.runs = out
}

func (s *logStore) phys(ri uint64) (uint64, bool) {
	for _, r := range s.runs {
		if ri >= r.first && ri <= r.last {
			return r.phys + (ri - r.first), true
		}
	}
	return 0, false
}

// FirstIndex implements raft.LogStore.
func (s *logStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.runs) == 0 {
		return 0, nil
	}
	return s.runs[0].first, nil
}

// LastIndex implements raft.LogStore.
func (s *logStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.runs) == 0 {
		return 0, nil
	}
	return s.runs[len(s.runs)-1].last, nil
}

// GetLog implements raft.LogStore.
func (s *logStore) GetLog(index uint64, out *raft.Log) error {
	s.mu.Lock()
	p, ok := s.phys(index)
	s.mu.Unlock()
	if !ok {
		return raft.ErrLogNotFound
	}
	if err := s.w.GetLog(p, out); err != nil {
		return err
	}
	if len(out.Data) < 8 || binary.BigEndian.Uint64(out.Data) != index {
		return fmt.Errorf("raft log entry %d: stored entry %d holds another index", index, p)
	}
	out.Index = index
	out.Data = out.Data[8:]
	return nil
}

// StoreLog implements raft.LogStore.
func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := s.w.LastIndex()
	if err != nil {
		return err
	}
	next++
	batch := make([]*raft.Log, len(logs))
	for i, l := range logs {
		data := make([]byte, 8+len(l.Data))
		binary.BigEndian.PutUint64(data, l.Index)
		copy(data[8:], l.Data)
		batch[i] = &raft.Log{Index: next + uint64(i), Term: l.Term, Type: l.Type, Data: data, Extensions: l.Extensions, AppendedAt: l.AppendedAt}
	}
	if err := s.w.StoreLogs(batch); err != nil {
		return err
	}
	for i, l := range logs {
		s.place(l.Index, next+uint64(i))
	}
	return nil
}

// DeleteRange implements raft.LogStore. Raft deletes either a prefix
// (compaction), a suffix (conflict), or everything (snapshot install).
func (s *logStore) DeleteRange(lo, hi uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.runs) == 0 || lo > hi {
		return nil
	}
	first, last := s.runs[0].first, s.runs[len(s.runs)-1].last
	if hi >= last && lo > first {
		s.cut(lo)
		return nil
	}
	if hi >= last {
		hi = last
	} else if lo > first {
		return fmt.Errorf("delete raft log %d-%d: only a prefix or a suffix of %d-%d can be deleted", lo, hi, first, last)
	}
	// A prefix (or everything): raise the floor first, then drop what
	// raft-wal holds up to the last entry deleted, keeping raft-wal's last
	// entry so that its index sequence continues.
	p, _ := s.phys(hi)
	if err := s.w.SetUint64(floorKey, hi+1); err != nil {
		return fmt.Errorf("write log floor: %w", err)
	}
	if err := s.w.SetUint64(startKey, p+1); err != nil {
		return fmt.Errorf("write log start: %w", err)
	}
	out := s.runs[:0]
	for _, r := range s.runs {
		if r.last <= hi {
			continue
		}
		if r.first <= hi {
			r.phys += hi + 1 - r.first
			r.first = hi + 1
		}
		out = append(out, r)
	}
	s.runs = out
	wfirst, err := s.w.FirstIndex()
	if err != nil {
		return err
	}
	wlast, err := s.w.LastIndex()
	if err != nil {
		return err
	}
	if upto := min(p, wlast-1); wfirst > 0 && upto >= wfirst {
		if err := s.w.DeleteRange(wfirst, upto); err != nil {
			return fmt.Errorf("compact raft log: %w", err)
		}
	}
	return nil
}

// Set implements raft.StableStore.
func (s *logStore) Set(k, v []byte) error { return s.w.Set(k, v) }

// Get implements raft.StableStore.
func (s *logStore) Get(k []byte) ([]byte, error) { return s.w.Get(k) }

// SetUint64 implements raft.StableStore.
func (s *logStore) SetUint64(k []byte, v uint64) error { return s.w.SetUint64(k, v) }

// GetUint64 implements raft.StableStore.
func (s *logStore) GetUint64(k []byte) (uint64, error) { return s.w.GetUint64(k) }

// IsMonotonic implements raft.MonotonicLogStore: Raft must empty the log
// rather than leave a gap when it installs a snapshot.
func (s *logStore) IsMonotonic() bool { return true }
