package route

import (
	"fmt"
	"slices"
	"testing"

	"github.com/straitmesh/strait/federation/state"
)

func failoverRec(key string, index uint64, value string) state.Record {
	return state.Record{Kind: state.KindFailover, Key: key, Value: value, Index: index}
}

// TestFailoverTable: the table follows the records, reports only the
// services whose priority changed, and keeps the last priority that parsed.
func TestFailoverTable(t *testing.T) {
	var f FailoverTable
	if got := f.Priority("demo", "api"); got != nil {
		t.Fatalf("empty table: %v", got)
	}
	changed := f.Refresh([]state.Record{
		failoverRec("demo/api", 5, `{"priority": ["c", "b"]}`),
		failoverRec("demo/web", 6, `{"priority": ["d"]}`),
	}, discard)
	if !slices.Equal(changed, []string{"demo/api", "demo/web"}) {
		t.Errorf("changed %v", changed)
	}
	if got := f.Priority("demo", "api"); !slices.Equal(got, []string{"c", "b"}) {
		t.Errorf("demo/api priority %v", got)
	}
	// Same priority at a new index, a new priority, a deletion.
	changed = f.Refresh([]state.Record{
		failoverRec("demo/api", 7, `{"priority": ["c", "b"]}`),
		failoverRec("demo/db", 8, `{"priority": ["b", "c"]}`),
	}, discard)
	slices.Sort(changed)
	if !slices.Equal(changed, []string{"demo/db", "demo/web"}) {
		t.Errorf("changed %v, want demo/db and demo/web", changed)
	}
	if got := f.Priority("demo", "web"); got != nil {
		t.Errorf("deleted demo/web still has priority %v", got)
	}
	// A record that does not parse keeps the last good priority.
	changed = f.Refresh([]state.Record{
		failoverRec("demo/api", 9, `{"priority": 7}`),
		failoverRec("demo/db", 8, `{"priority": ["b", "c"]}`),
		failoverRec("demo/new", 10, `not json`),
	}, discard)
	if len(changed) != 0 {
		t.Errorf("changed %v after unparsable records", changed)
	}
	if got := f.Priority("demo", "api"); !slices.Equal(got, []string{"c", "b"}) {
		t.Errorf("demo/api priority %v after an unparsable update", got)
	}
	if got := f.Priority("demo", "new"); got != nil {
		t.Errorf("unparsable demo/new has priority %v", got)
	}
}

func BenchmarkFailoverPriority(b *testing.B) {
	var f FailoverTable
	var recs []state.Record
	for i := range 1000 {
		recs = append(recs, failoverRec(fmt.Sprintf("demo/svc-%d", i), uint64(i+1), `{"priority": ["a", "b", "c"]}`))
	}
	f.Refresh(recs, discard)
	b.ReportAllocs()
	for b.Loop() {
		if f.Priority("demo", "svc-500") == nil {
			b.Fatal("no priority")
		}
	}
}
