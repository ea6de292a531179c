package state

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

func openTestLog(t *testing.T, dir string) (*logStore, func()) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	s, err := openLogStore(w)
	if err != nil {
		t.Fatal(err)
	}
	return s, func() { w.Close(); meta.Close() }
}

// TestLogStoreMatchesModel drives the log store the way Raft does (appends,
// conflicting-suffix truncations, compactions, emptying for a snapshot)
// with reopens in between, against a plain map of what Raft expects.
// Truncations land in the unsealed tail segment, the case raft-wal itself
// cannot reopen.
func TestLogStoreMatchesModel(t *testing.T) {
	for seed := int64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			dir := t.TempDir()
			s, closeLog := openTestLog(t, dir)
			defer func() { closeLog() }()
			model := map[uint64]string{}
			var first, last uint64
			term := uint64(1)
			appendN := func(at uint64, n int) {
				var logs []*raft.Log
				for i := range n {
					idx := at + uint64(i)
					data := fmt.Sprintf("t%d-i%d-%d", term, idx, rng.Int())
					logs = append(logs, &raft.Log{Index: idx, Term: term, Type: raft.LogCommand, Data: []byte(data)})
					model[idx] = data
				}
				if err := s.StoreLogs(logs); err != nil {
					t.Fatalf("store %d at %d: %v", n, at, err)
				}
				if first == 0 {
					first = at
				}
				last = at + uint64(n) - 1
			}
			appendN(1, 5)
			for step := range 250 {
				op := rng.Intn(12)
				switch {
				case op < 6:
					appendN(last+1, 1+rng.Intn(6))
				case op < 8 && last > first: // conflict: new term replaces a suffix
					lo := first + 1 + uint64(rng.Int63n(int64(last-first)))
					if err := s.DeleteRange(lo, last); err != nil {
						t.Fatal(err)
					}
					for i := lo; i <= last; i++ {
						delete(model, i)
					}
					last = lo - 1
					term++
					appendN(lo, 1+rng.Intn(3))
				case op < 10 && last > first: // compaction
					hi := first + uint64(rng.Int63n(int64(last-first)))
					if err := s.DeleteRange(first, hi); err != nil {
						t.Fatal(err)
					}
					for i := first; i <= hi; i++ {
						delete(model, i)
					}
					first = hi + 1
				case op == 10: // snapshot install: empty, continue after a gap
					if err := s.DeleteRange(first, last); err != nil {
						t.Fatal(err)
					}
					clear(model)
					next := last + 2 + uint64(rng.Intn(20))
					first, last = 0, 0
					appendN(next, 1+rng.Intn(3))
				default:
					closeLog()
					s, closeLog = openTestLog(t, dir)
				}
				gf, _ := s.FirstIndex()
				gl, _ := s.LastIndex()
				if gf != first || gl != last {
					t.Fatalf("step %d: range %d-%d, want %d-%d", step, gf, gl, first, last)
				}
			}
			closeLog()
			s, closeLog = openTestLog(t, dir)
			for i := first; i <= last; i++ {
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil || string(l.Data) != model[i] || l.Index != i {
					t.Fatalf("entry %d: %q (%v), want %q", i, l.Data, err, model[i])
				}
			}
			var l raft.Log
			if err := s.GetLog(last+1, &l); err != raft.ErrLogNotFound {
				t.Fatalf("entry past the end: %v", err)
			}
		})
	}
}
