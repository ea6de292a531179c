package state

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func raftLog(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func applyCmd(t *testing.T, f *fsm, index uint64, c *command) applyResult {
	t.Helper()
	b, err := encodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(raftLog(index, b)).(applyResult)
}

// TestFSMVersionsAndDedup checks that every change carries its Raft index,
// that history keeps versions in order, and that a request ID applies once.
func TestFSMVersionsAndDedup(t *testing.T) {
	f := newFSM("strait.local", discard())
	now := time.Unix(1700000000, 0).UTC()
	put := &command{Op: OpPut, Kind: KindCluster, Key: "a", Value: `{"region":"r1"}`, RequestID: "x", Time: now, By: "spiffe://strait.local/region/r/cluster/c"}
	if r := applyCmd(t, f, 3, put); r.Index != 3 || r.Dup || r.Err != nil {
		t.Fatalf("first apply: %+v", r)
	}
	if r := applyCmd(t, f, 4, put); r.Index != 3 || !r.Dup {
		t.Fatalf("retried request: %+v, want index 3 marked duplicate", r)
	}
	applyCmd(t, f, 5, &command{Op: OpPut, Kind: KindCluster, Key: "a", Value: `{"region":"r2"}`, Time: now})
	rec, ok := f.View().Get(KindCluster, "a")
	if !ok || rec.Index != 5 || rec.Created != 3 || rec.Value != `{"region":"r2"}` || f.View().Index != 5 {
		t.Fatalf("record %+v at view %d", rec, f.View().Index)
	}
	applyCmd(t, f, 6, &command{Op: OpDelete, Kind: KindCluster, Key: "a", Time: now})
	if _, ok := f.View().Get(KindCluster, "a"); ok {
		t.Fatal("deleted record still visible")
	}
	h := f.History(KindCluster, "a")
	if len(h) != 3 || h[0].Index != 3 || h[0].By == "" || h[1].Index != 5 || h[2].Op != OpDelete {
		t.Fatalf("history %+v", h)
	}
	// Undecodable entries change nothing but still advance the index.
	if r := f.Apply(raftLog(7, []byte("garbage"))).(applyResult); r.Err == nil || f.View().Index != 7 {
		t.Fatalf("garbage entry: %+v", r)
	}

	// A snapshot restores into an identical state, and a foreign one is refused.
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	sink := &memSink{Buffer: &buf}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM("strait.local", discard())
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g.View().Index != 7 || len(g.History(KindCluster, "a")) != 3 {
		t.Fatalf("restored view at %d with history %+v", g.View().Index, g.History(KindCluster, "a"))
	}
	if r := applyCmd(t, g, 8, put); !r.Dup || r.Index != 3 {
		t.Fatalf("request IDs not restored: %+v", r)
	}
	other := newFSM("other.example", discard())
	if err := other.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err == nil {
		t.Fatal("restored a snapshot of another trust domain")
	}
}

type memSink struct{ *bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
