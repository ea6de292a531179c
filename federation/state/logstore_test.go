package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

func openTestLog(t *testing.T, dir string, segmentSize int) (*wal.WAL, func()) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
	if err != nil {
		meta.Close()
		t.Fatal(err)
	}
	return w, func() { w.Close() }
}

// TestLogStoreMatchesModel drives raft-wal the way Raft does (appends,
// conflicting-suffix truncations, compactions, emptying for a snapshot)
// with reopens in between, against a plain map of what Raft expects. With
// 1 MiB segments every truncation lands in the unsealed tail segment, the
// case raft-wal before v0.4.1 could not reopen (hashicorp/raft-wal#31);
// with 4 KiB segments truncations also cross sealed segments.
func TestLogStoreMatchesModel(t *testing.T) {
	for _, size := range []int{1 << 20, 4 << 10} {
		t.Run(fmt.Sprintf("segment=%d", size), func(t *testing.T) { logModel(t, size) })
	}
}

func logModel(t *testing.T, segmentSize int) {
	for seed := int64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			dir := t.TempDir()
			s, closeLog := openTestLog(t, dir, segmentSize)
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
					s, closeLog = openTestLog(t, dir, segmentSize)
				}
				gf, _ := s.FirstIndex()
				gl, _ := s.LastIndex()
				if gf != first || gl != last {
					t.Fatalf("step %d: range %d-%d, want %d-%d", step, gf, gl, first, last)
				}
			}
			closeLog()
			s, closeLog = openTestLog(t, dir, segmentSize)
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

// oldLogFixture is what a gateway before raft-wal v0.4.1 read back from
// a log in testdata/oldlog/*/wal, written by that gateway's log store.
type oldLogFixture struct {
	CurrentTerm  uint64 `json:"currentTerm"`
	LastVoteTerm uint64 `json:"lastVoteTerm"`
	LastVoteCand string `json:"lastVoteCand"`
	Entries      []struct {
		Index      uint64    `json:"index"`
		Term       uint64    `json:"term"`
		Type       string    `json:"type"`
		Data       []byte    `json:"data"`
		Extensions []byte    `json:"extensions"`
		AppendedAt time.Time `json:"appendedAt"`
	} `json:"entries"`
}

// oldDataDir returns a data directory holding a copy of the old-format
// log in testdata/oldlog/name, and what it holds.
func oldDataDir(t *testing.T, name string) (string, oldLogFixture) {
	t.Helper()
	var f oldLogFixture
	b, err := os.ReadFile(filepath.Join("testdata", "oldlog", name, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dataDir, oldLogDir), os.DirFS(filepath.Join("testdata", "oldlog", name, "wal"))); err != nil {
		t.Fatal(err)
	}
	return dataDir, f
}

func discardLogs() (*slog.Logger, hclog.Logger) {
	l := slog.New(slog.DiscardHandler)
	return l, newHCLog(l, "raft", hclog.Info)
}

// checkMigrated checks that w holds exactly what the old store held.
func checkMigrated(t *testing.T, w *wal.WAL, f oldLogFixture) {
	t.Helper()
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	var wantFirst, wantLast uint64
	if n := len(f.Entries); n > 0 {
		wantFirst, wantLast = f.Entries[0].Index, f.Entries[n-1].Index
	}
	if first != wantFirst || last != wantLast {
		t.Fatalf("log %d-%d, want %d-%d", first, last, wantFirst, wantLast)
	}
	for _, e := range f.Entries {
		var l raft.Log
		if err := w.GetLog(e.Index, &l); err != nil {
			t.Fatalf("entry %d: %v", e.Index, err)
		}
		if l.Index != e.Index || l.Term != e.Term || l.Type.String() != e.Type || !bytes.Equal(l.Data, e.Data) ||
			!bytes.Equal(l.Extensions, e.Extensions) || !l.AppendedAt.Equal(e.AppendedAt) {
			t.Fatalf("entry %d: %d/%d %s %q %x %v, want %+v", e.Index, l.Index, l.Term, l.Type, l.Data, l.Extensions, l.AppendedAt, e)
		}
	}
	term, _ := w.GetUint64([]byte("CurrentTerm"))
	voteTerm, _ := w.GetUint64([]byte("LastVoteTerm"))
	cand, _ := w.Get([]byte("LastVoteCand"))
	if term != f.CurrentTerm || voteTerm != f.LastVoteTerm || string(cand) != f.LastVoteCand {
		t.Fatalf("term %d, vote %d for %q; want %d, %d for %q", term, voteTerm, cand, f.CurrentTerm, f.LastVoteTerm, f.LastVoteCand)
	}
	for _, k := range []string{"strait-log-floor", "strait-log-start"} {
		if v, _ := w.Get([]byte(k)); v != nil {
			t.Fatalf("the old store's %s was copied", k)
		}
	}
}

// TestOldLogIsMigrated: a data directory from before raft-wal v0.4.1
// (fixtures written by that version's log store: runs left by conflicts,
// compactions and a log emptied for a snapshot) opens as the same Raft
// log and the same term and vote, in raft-log, and the old directory goes.
func TestOldLogIsMigrated(t *testing.T) {
	for _, name := range []string{"runs", "emptied"} {
		t.Run(name, func(t *testing.T) {
			dataDir, f := oldDataDir(t, name)
			log, hlog := discardLogs()
			w, err := openLog(dataDir, log, hlog)
			if err != nil {
				t.Fatal(err)
			}
			checkMigrated(t, w, f)
			// Raft goes on from there: a conflict and an append.
			next := uint64(len(f.Entries)) + 1
			if n := len(f.Entries); n > 0 {
				next = f.Entries[n-1].Index
				if err := w.DeleteRange(next, next); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.StoreLogs([]*raft.Log{{Index: next, Term: f.CurrentTerm + 1, Type: raft.LogNoop}}); err != nil {
				t.Fatal(err)
			}
			w.Close()
			for _, d := range []string{oldLogDir, logDir + ".tmp"} {
				if _, err := os.Stat(filepath.Join(dataDir, d)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s left behind: %v", d, err)
				}
			}
			w, err = openLog(dataDir, log, hlog)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var l raft.Log
			if err := w.GetLog(next, &l); err != nil || l.Term != f.CurrentTerm+1 {
				t.Fatalf("entry %d after reopening: term %d, %v", next, l.Term, err)
			}
		})
	}
}

// TestOldLogMigrationResumes: whichever step a crash interrupts, the next
// start ends with the migrated log, and never with two logs it cannot
// tell apart.
func TestOldLogMigrationResumes(t *testing.T) {
	log, hlog := discardLogs()
	// reopen opens dataDir after prepare left it as a crash would have, and
	// checks the migrated log.
	reopen := func(t *testing.T, prepare func(dataDir string) error) {
		t.Helper()
		dataDir, f := oldDataDir(t, "runs")
		if err := prepare(dataDir); err != nil {
			t.Fatal(err)
		}
		w, err := openLog(dataDir, log, hlog)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		checkMigrated(t, w, f)
	}
	t.Run("half-written copy", func(t *testing.T) {
		reopen(t, func(dataDir string) error {
			tmp := filepath.Join(dataDir, logDir+".tmp")
			if err := os.MkdirAll(tmp, 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(tmp, "wal-meta.db"), []byte("torn"), 0o600)
		})
	})
	t.Run("marked, copy not yet installed", func(t *testing.T) {
		reopen(t, func(dataDir string) error {
			if err := os.WriteFile(filepath.Join(dataDir, oldLogDir, migratedMark), nil, 0o600); err != nil {
				return err
			}
			return os.MkdirAll(filepath.Join(dataDir, logDir+".tmp"), 0o700)
		})
	})
	t.Run("installed, old not yet removed", func(t *testing.T) {
		dataDir, f := oldDataDir(t, "runs")
		w, err := openLog(dataDir, log, hlog)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		// Put the old directory back as the crash would have left it: marked.
		again, _ := oldDataDir(t, "runs")
		if err := os.Rename(filepath.Join(again, oldLogDir), filepath.Join(dataDir, oldLogDir)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataDir, oldLogDir, migratedMark), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		w, err = openLog(dataDir, log, hlog)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		checkMigrated(t, w, f)
		if _, err := os.Stat(filepath.Join(dataDir, oldLogDir)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("migrated old log left behind: %v", err)
		}
	})
	t.Run("unmigrated old log beside a new one", func(t *testing.T) {
		dataDir, _ := oldDataDir(t, "runs")
		if err := os.MkdirAll(filepath.Join(dataDir, logDir), 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := openLog(dataDir, log, hlog)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dataDir, oldLogDir)) ||
			!strings.Contains(err.Error(), filepath.Join(dataDir, logDir)) {
			t.Fatalf("opened with two logs: %v", err)
		}
	})
}

// TestOpenRefusesUnknownOldLog: a directory in <data>/wal that is not in
// the old format either (here plain raft-wal, as the very first gateways
// wrote) stops the store with an error that names it and says what to do,
// and is left as it was.
func TestOpenRefusesUnknownOldLog(t *testing.T) {
	dataDir := t.TempDir()
	old := filepath.Join(dataDir, oldLogDir)
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	w, closeLog := openTestLog(t, old, 1<<20)
	conf := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "n0", Address: "127.0.0.1:8300"}}})
	if err := w.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: conf}, {Index: 2, Term: 1, Type: raft.LogNoop}}); err != nil {
		t.Fatal(err)
	}
	closeLog()

	cfg := DefaultConfig()
	cfg.DataDir = dataDir
	_, trans := raft.NewInmemTransport("self")
	defer trans.Close()
	_, err := Open(cfg, Options{Name: "n0", TrustDomain: "strait.local", ControlAddr: "127.0.0.1:3", Transport: trans,
		Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !errors.Is(err, errNotOldFormat) || !strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), "move "+old+" aside") {
		t.Fatalf("opened over a log it cannot read: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, logDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a new log was created beside it: %v", err)
	}
	w, closeLog = openTestLog(t, old, 1<<20)
	defer closeLog()
	if last, _ := w.LastIndex(); last != 2 {
		t.Fatalf("the refused log now ends at %d", last)
	}
}
