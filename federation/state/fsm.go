package state

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// historyDepth is how many past versions of each key the store keeps.
	historyDepth = 16
	// requestMemory is how many client request IDs the store remembers to
	// apply retried writes once.
	requestMemory = 10000
)

// View is an immutable view of the routing state as of one applied Raft
// index. Readers never lock.
type View struct {
	// Index is the last Raft index applied into this view.
	Index uint64
	// FromDisk is set while the view is the copy a gateway loaded from its
	// own disk at start and has not yet caught up past.
	FromDisk bool
	// SavedAt is when a view loaded from disk was written.
	SavedAt time.Time

	records map[string]map[string]*Record // kind -> key -> record; never mutated
}

// Get returns the record of kind and key.
func (v *View) Get(kind, key string) (Record, bool) {
	r, ok := v.records[kind][key]
	if !ok {
		return Record{}, false
	}
	return *r, true
}

// List returns the records of kind sorted by key, or of every kind (sorted
// by kind, then key) when kind is "".
func (v *View) List(kind string) []Record {
	var out []Record
	for k, m := range v.records {
		if kind != "" && k != kind {
			continue
		}
		for _, r := range m {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Count returns the number of records of kind.
func (v *View) Count(kind string) int { return len(v.records[kind]) }

// applyResult is what fsm.Apply returns for a command.
type applyResult struct {
	Index uint64 // the index that applied the write (the first one, for a retry)
	Dup   bool   // the request ID had been applied before
	Err   error
}

// fsm is the Raft state machine of the routing state. Apply, Snapshot and
// Restore are called by raft from one goroutine; readers use the published
// View.
type fsm struct {
	trustDomain string
	log         *slog.Logger
	onApply     func(*View)         // called after a new view is published; may be nil
	onApproval  func(ApprovalEvent) // called, unlocked, for each step of a four-eyes change; may be nil

	mu       sync.Mutex
	index    uint64
	records  map[string]map[string]*Record // copy-on-write, shared with views
	history  map[string][]Version          // "kind\x00key" -> oldest first
	requests map[string]uint64             // request ID -> index that applied it
	reqOrder []string                      // request IDs, oldest first

	// floor is the index of the view loaded from disk at start: views below
	// it are not published, so what readers see never goes back.
	floor uint64
	view  atomic.Pointer[View]
}

func newFSM(trustDomain string, log *slog.Logger) *fsm {
	f := &fsm{trustDomain: trustDomain, log: log, records: map[string]map[string]*Record{},
		history: map[string][]Version{}, requests: map[string]uint64{}}
	f.view.Store(&View{records: f.records})
	return f
}

// View returns the current view.
func (f *fsm) View() *View { return f.view.Load() }

// loadCached installs a view read from this gateway's disk before Raft
// starts: readers see it until the log catches up past it.
func (f *fsm) loadCached(body *snapshotBody) {
	recs := map[string]map[string]*Record{}
	for _, r := range body.Records {
		if recs[r.Kind] == nil {
			recs[r.Kind] = map[string]*Record{}
		}
		rc := r
		recs[r.Kind][r.Key] = &rc
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.floor = body.Index
	f.view.Store(&View{Index: body.Index, FromDisk: true, SavedAt: body.SavedAt, records: recs})
}

// publishLocked installs the view of the current state unless it is below
// the floor. Called with mu held.
func (f *fsm) publishLocked() {
	if f.index < f.floor {
		return
	}
	v := &View{Index: f.index, records: f.records}
	f.view.Store(v)
	if f.onApply != nil {
		f.onApply(v)
	}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	c, err := decodeCommand(l.Data)
	var events []ApprovalEvent
	defer func() {
		if f.onApproval != nil {
			for _, e := range events {
				f.onApproval(e)
			}
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.publishLocked()
	f.index = max(f.index, l.Index)
	if err != nil {
		f.log.Error("routing-state log entry refused", "index", l.Index, "err", err)
		return applyResult{Index: l.Index, Err: err}
	}
	needed := f.approvalsLocked()
	if needed > 0 && (c.Op == OpPut || c.Op == OpDelete) && guarded(c.Kind) {
		return applyResult{Index: l.Index, Err: fmt.Errorf("%w: %s %s changes only with %d approvals: propose it (strait policy propose) (rule approvals-required)",
			ErrDenied, c.Kind, c.Key, needed)}
	}
	if c.RequestID != "" {
		if idx, ok := f.requests[c.RequestID]; ok {
			return applyResult{Index: idx, Dup: true}
		}
		f.rememberLocked(c.RequestID, l.Index)
	}
	switch c.Op {
	case OpPut:
		f.putLocked(Record{Kind: c.Kind, Key: c.Key, Value: c.Value, Index: l.Index, Time: c.Time, By: c.By}, c.RequestID)
	case OpDelete:
		if _, ok := f.records[c.Kind][c.Key]; ok {
			f.deleteLocked(c.Kind, c.Key, Version{Index: l.Index, Op: OpDelete, Time: c.Time, By: c.By, RequestID: c.RequestID})
		}
	case OpPropose, OpApprove:
		if events, err = f.applyApprovalLocked(c, l.Index); err != nil {
			delete(f.requests, c.RequestID) // a retry is decided again
			return applyResult{Index: l.Index, Err: err}
		}
	case OpConsume:
		if err := f.applyConsumeLocked(c, l.Index); err != nil {
			delete(f.requests, c.RequestID)
			return applyResult{Index: l.Index, Err: err}
		}
	case OpRestore:
		keep := map[string]bool{}
		for _, r := range c.Records {
			keep[r.Kind+"\x00"+r.Key] = true
		}
		for _, kind := range userKinds {
			if needed > 0 && guarded(kind) {
				continue // changed by approval only
			}
			for key := range f.records[kind] {
				if !keep[kind+"\x00"+key] {
					f.deleteLocked(kind, key, Version{Index: l.Index, Op: OpRestore, Time: c.Time, By: c.By, RequestID: c.RequestID})
				}
			}
		}
		for _, r := range c.Records {
			if old, ok := f.records[r.Kind][r.Key]; ok && old.Value == r.Value || needed > 0 && guarded(r.Kind) {
				continue
			}
			f.putLocked(Record{Kind: r.Kind, Key: r.Key, Value: r.Value, Index: l.Index, Time: c.Time, By: c.By}, c.RequestID)
		}
	}
	return applyResult{Index: l.Index}
}

func (f *fsm) rememberLocked(id string, index uint64) {
	f.requests[id] = index
	f.reqOrder = append(f.reqOrder, id)
	if len(f.reqOrder) > requestMemory {
		drop := len(f.reqOrder) - requestMemory
		for _, old := range f.reqOrder[:drop] {
			delete(f.requests, old)
		}
		f.reqOrder = slices.Clone(f.reqOrder[drop:])
	}
}

func (f *fsm) putLocked(r Record, requestID string) {
	kind := maps.Clone(f.records[r.Kind])
	if kind == nil {
		kind = map[string]*Record{}
	}
	r.Created = r.Index
	if old, ok := kind[r.Key]; ok {
		r.Created = old.Created
	}
	kind[r.Key] = &r
	outer := maps.Clone(f.records)
	outer[r.Kind] = kind
	f.records = outer
	f.addVersionLocked(r.Kind, r.Key, Version{Index: r.Index, Op: OpPut, Value: r.Value, Time: r.Time, By: r.By, RequestID: requestID})
}

func (f *fsm) deleteLocked(kindName, key string, v Version) {
	kind := maps.Clone(f.records[kindName])
	delete(kind, key)
	outer := maps.Clone(f.records)
	outer[kindName] = kind
	f.records = outer
	f.addVersionLocked(kindName, key, v)
}

func (f *fsm) addVersionLocked(kind, key string, v Version) {
	id := kind + "\x00" + key
	h := append(f.history[id], v)
	if len(h) > historyDepth {
		h = slices.Clone(h[len(h)-historyDepth:])
	}
	f.history[id] = h
}

// History returns the known versions of kind/key, oldest first.
func (f *fsm) History(kind, key string) []Version {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history[kind+"\x00"+key])
}

// appliedIndex is the last index applied to the state machine.
func (f *fsm) appliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

// requestIndex reports the index that applied request id, if remembered.
func (f *fsm) requestIndex(id string) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx, ok := f.requests[id]
	return idx, ok
}

// body captures the whole state for a snapshot.
func (f *fsm) body(withMeta bool) *snapshotBody {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := &snapshotBody{TrustDomain: f.trustDomain, Index: f.index, Records: (&View{records: f.records}).List("")}
	if b.Records == nil {
		b.Records = []Record{}
	}
	if !withMeta {
		return b
	}
	for id, vs := range f.history {
		kind, key, _ := cutNull(id)
		b.History = append(b.History, historyEntry{Kind: kind, Key: key, Versions: slices.Clone(vs)})
	}
	sort.Slice(b.History, func(i, j int) bool {
		if b.History[i].Kind != b.History[j].Kind {
			return b.History[i].Kind < b.History[j].Kind
		}
		return b.History[i].Key < b.History[j].Key
	})
	for _, id := range f.reqOrder {
		b.Requests = append(b.Requests, requestEntry{ID: id, Index: f.requests[id]})
	}
	return b
}

func cutNull(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{body: f.body(true)}, nil
}

// Restore implements raft.FSM: it replaces the whole state with a snapshot
// after checking it, and refuses a corrupted or foreign one.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	body, err := decodeSnapshot(rc, f.trustDomain)
	if err != nil {
		return fmt.Errorf("restore routing state: %w", err)
	}
	recs := map[string]map[string]*Record{}
	for _, r := range body.Records {
		if recs[r.Kind] == nil {
			recs[r.Kind] = map[string]*Record{}
		}
		rc := r
		recs[r.Kind][r.Key] = &rc
	}
	hist := map[string][]Version{}
	for _, h := range body.History {
		hist[h.Kind+"\x00"+h.Key] = h.Versions
	}
	reqs := map[string]uint64{}
	order := make([]string, 0, len(body.Requests))
	for _, r := range body.Requests {
		if _, dup := reqs[r.ID]; !dup {
			order = append(order, r.ID)
		}
		reqs[r.ID] = r.Index
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index, f.records, f.history, f.requests, f.reqOrder = body.Index, recs, hist, reqs, order
	f.publishLocked()
	return nil
}

type fsmSnapshot struct{ body *snapshotBody }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	s.body.SavedAt = time.Now().UTC()
	if err := encodeSnapshot(sink, s.body); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
