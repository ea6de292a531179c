package route

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/straitmesh/strait/federation/state"
)

// FailoverTable holds the failover priorities of the routing state
// (KindFailover records, keyed "namespace/name") as an immutable map that
// the planner reads for every connection without locking; the watch loop
// swaps in a new map after each change of the state.
type FailoverTable struct {
	prio atomic.Pointer[map[string][]string]

	// Owned by refresh's caller (one goroutine at a time).
	parsed map[string]parsedFailover
}

type parsedFailover struct {
	index    uint64
	priority []string
}

// Priority returns the failover Priority of service ns/name, or nil.
func (f *FailoverTable) Priority(ns, name string) []string {
	m := f.prio.Load()
	if m == nil {
		return nil
	}
	return (*m)[ns+"/"+name]
}

// Refresh installs recs, the failover records of the routing state;
// records whose index did not change are not parsed again. It reports the
// services whose priority changed.
func (f *FailoverTable) Refresh(recs []state.Record, log *slog.Logger) []string {
	next := make(map[string]parsedFailover, len(recs))
	prio := make(map[string][]string, len(recs))
	var changed []string
	for _, r := range recs {
		old, ok := f.parsed[r.Key]
		p := old
		if !ok || old.index != r.Index {
			var fo state.Failover
			if err := json.Unmarshal([]byte(r.Value), &fo); err != nil {
				// The control API validates payloads before they reach the
				// log; this only happens across versions with other rules.
				// The last priority that parsed stays.
				log.Warn("failover record ignored", "service", r.Key, "index", r.Index, "err", err)
				if !ok {
					continue
				}
			} else {
				p = parsedFailover{index: r.Index, priority: fo.Priority}
			}
			if !ok || !slices.Equal(old.priority, p.priority) {
				changed = append(changed, r.Key)
			}
		}
		next[r.Key] = p
		prio[r.Key] = p.priority
	}
	for k := range f.parsed {
		if _, ok := next[k]; !ok {
			changed = append(changed, k)
		}
	}
	f.parsed = next
	f.prio.Store(&prio)
	return changed
}
