package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Raft's log and stable store are raft-wal, used as it is, in
// <data dir>/raft-log.
//
// Gateways built with raft-wal v0.4.0 kept them in <data dir>/wal in a
// format of their own: v0.4.0 could not reopen a log whose tail it had
// truncated (hashicorp/raft-wal#31), so that store never truncated
// raft-wal. Each raft-wal entry carried the Raft index it held in its
// first 8 data bytes (big-endian); a run of entries whose Raft index went
// back replaced the entries at and above it, one that skipped ahead
// replaced everything before it (the log emptied for a snapshot); entries
// below the Raft index stored under "strait-log-floor" were deleted, and
// replaying started at the raft-wal index under "strait-log-start". Read
// as plain raft-wal, that log would put every entry at the wrong index.
//
// openLog migrates such a directory once, before Raft starts: it replays
// the runs into a new raft-wal in raft-log.tmp, copies Raft's term and
// vote, marks the old directory as migrated, renames raft-log.tmp to
// raft-log and removes the old directory. A crash before the rename
// leaves the old directory as it was and the migration runs again; one
// after it leaves the marked old directory, which the next start removes.
const (
	logDir       = "raft-log"
	oldLogDir    = "wal"
	migratedMark = "MIGRATED-TO-RAFT-LOG"
)

// errNotOldFormat marks a log in <data dir>/wal that is not in the format
// before raft-wal v0.4.1 either.
var errNotOldFormat = errors.New("not the format gateways wrote before raft-wal v0.4.1")

// raftStableKeys are the keys hashicorp/raft keeps in its StableStore.
var raftStableKeys = [][]byte{[]byte("CurrentTerm"), []byte("LastVoteTerm"), []byte("LastVoteCand")}

// openLog opens Raft's log and stable store in dataDir, first migrating
// a log that gateways before raft-wal v0.4.1 wrote.
func openLog(dataDir string, log *slog.Logger, hlog hclog.Logger) (*wal.WAL, error) {
	dir := filepath.Join(dataDir, logDir)
	old := filepath.Join(dataDir, oldLogDir)
	hasDir, err := isDir(dir)
	if err != nil {
		return nil, err
	}
	hasOld, err := isDir(old)
	if err != nil {
		return nil, err
	}
	switch {
	case hasOld && !hasDir:
		if err := migrateLog(old, dir, log, hlog); err != nil {
			return nil, err
		}
	case hasOld:
		if _, err := os.Stat(filepath.Join(old, migratedMark)); err != nil {
			return nil, fmt.Errorf("raft log: both %s (the format before raft-wal v0.4.1, not migrated) and %s exist, "+
				"as after running an older gateway over this data directory; remove the one that is stale and restart", old, dir)
		}
	}
	if hasOld {
		if err := os.RemoveAll(old); err != nil {
			log.Warn("remove migrated raft log", "dir", old, "err", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft log dir: %w", err)
	}
	w, err := openWAL(dir, hlog)
	if err != nil {
		return nil, fmt.Errorf("open raft log in %s: %w", dir, err)
	}
	return w, nil
}

// openWAL opens raft-wal in dir. WAL.Close closes its metadata too, but a
// failed Open leaves it open.
func openWAL(dir string, hlog hclog.Logger) (*wal.WAL, error) {
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithLogger(hlog), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, err
	}
	return w, nil
}

func isDir(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("raft log dir: %w", err)
	case !fi.IsDir():
		return false, fmt.Errorf("raft log dir: %s is not a directory", path)
	}
	return true, nil
}

// oldLogHelp says what to do with an old-format log that cannot be migrated.
func oldLogHelp(old string) string {
	return fmt.Sprintf("move %s aside and restart: the gateway then starts with an empty log and catches up from "+
		"the leader (a voter: remove it first with `strait state remove-peer`, and one voter at a time)", old)
}

// migrateLog copies the Raft log and stable store in old, in the format
// before raft-wal v0.4.1, to a new raft-wal in dir.
func migrateLog(old, dir string, log *slog.Logger, hlog hclog.Logger) error {
	src, err := openWAL(old, hlog)
	if err != nil {
		return fmt.Errorf("open raft log %s to migrate it: %w; %s", old, err, oldLogHelp(old))
	}
	defer src.Close()
	runs, err := replayOldLog(src)
	if err != nil {
		return fmt.Errorf("migrate raft log %s: %w; %s", old, err, oldLogHelp(old))
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("migrate raft log: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("migrate raft log: %w", err)
	}
	dst, err := openWAL(tmp, hlog)
	if err != nil {
		return fmt.Errorf("migrate raft log: open %s: %w", tmp, err)
	}
	first, last, err := copyOldLog(src, dst, runs)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", tmp, cerr)
	}
	if errors.Is(err, errNotOldFormat) {
		return fmt.Errorf("migrate raft log %s: %w; %s", old, err, oldLogHelp(old))
	}
	if err != nil {
		return fmt.Errorf("migrate raft log %s: %w", old, err)
	}
	// The new log's files, then the mark, then the rename reach the disk
	// in that order.
	if err := syncDir(tmp); err != nil {
		return fmt.Errorf("migrate raft log %s: %w", old, err)
	}
	if err := os.WriteFile(filepath.Join(old, migratedMark), []byte("copied to "+dir+"\n"), 0o600); err != nil {
		return fmt.Errorf("migrate raft log %s: %w", old, err)
	}
	if err := syncDir(old); err != nil {
		return fmt.Errorf("migrate raft log %s: %w", old, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("migrate raft log %s: %w", old, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("migrate raft log %s: %w", old, err)
	}
	log.Info("migrated raft log to plain raft-wal", "from", old, "to", dir, "first", first, "last", last)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// oldRun is Raft indexes first..last of an old-format log, stored from
// raft-wal index phys on.
type oldRun struct{ first, last, phys uint64 }

// maxRaftIndex bounds the Raft indexes an old-format entry may carry: far
// above any real log, far below the first 8 bytes of Raft's own payloads
// read as an index (a configuration's msgpack, a JSON command).
const maxRaftIndex = 1 << 48

// replayOldLog returns the runs of Raft indexes an old-format log holds,
// by the rules the old store applied when it opened.
func replayOldLog(w *wal.WAL) ([]oldRun, error) {
	floor, err := w.GetUint64([]byte("strait-log-floor"))
	if err != nil {
		return nil, fmt.Errorf("read log floor: %w", err)
	}
	start, err := w.GetUint64([]byte("strait-log-start"))
	if err != nil {
		return nil, fmt.Errorf("read log start: %w", err)
	}
	first, err := w.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := w.LastIndex()
	if err != nil {
		return nil, err
	}
	if last == 0 {
		return nil, nil
	}
	var runs []oldRun
	for p := max(first, start); p <= last; p++ {
		ri, err := oldIndexAt(w, p)
		if err != nil {
			return nil, err
		}
		if ri < floor {
			continue
		}
		runs = placeOld(runs, ri, p)
	}
	return runs, nil
}

// oldIndexAt returns the Raft index that raft-wal entry p of an old-format
// log carries.
func oldIndexAt(w *wal.WAL, p uint64) (uint64, error) {
	var l raft.Log
	if err := w.GetLog(p, &l); err != nil {
		return 0, fmt.Errorf("read raft-wal entry %d: %w", p, err)
	}
	if len(l.Data) < 8 {
		return 0, fmt.Errorf("raft-wal entry %d carries no Raft index: %w", p, errNotOldFormat)
	}
	ri := binary.BigEndian.Uint64(l.Data)
	if ri == 0 || ri >= maxRaftIndex {
		return 0, fmt.Errorf("raft-wal entry %d carries Raft index %d: %w", p, ri, errNotOldFormat)
	}
	return ri, nil
}

// placeOld records that Raft index ri is stored at raft-wal index p, the
// latest entry written.
func placeOld(runs []oldRun, ri, p uint64) []oldRun {
	if n := len(runs); n > 0 {
		r := &runs[n-1]
		switch {
		case ri == r.last+1 && p == r.phys+(r.last-r.first)+1:
			r.last++
			return runs
		case ri == r.last+1:
			// Follows in Raft's order, not in raft-wal's: a new run.
		case ri > r.last+1:
			runs = runs[:0] // a gap: everything before was deleted
		default:
			out := runs[:0] // a conflict: drop ri and above
			for _, r := range runs {
				if r.first < ri {
					r.last = min(r.last, ri-1)
					out = append(out, r)
				}
			}
			runs = out
		}
	}
	return append(runs, oldRun{first: ri, last: ri, phys: p})
}

// copyOldLog writes the entries of runs from src to dst at their Raft
// indexes, and Raft's term and vote, and returns the Raft indexes copied.
func copyOldLog(src, dst *wal.WAL, runs []oldRun) (first, last uint64, err error) {
	for _, k := range raftStableKeys {
		v, err := src.Get(k)
		if err != nil {
			return 0, 0, fmt.Errorf("read %s: %w", k, err)
		}
		if v == nil {
			continue
		}
		if err := dst.Set(k, v); err != nil {
			return 0, 0, fmt.Errorf("write %s: %w", k, err)
		}
	}
	const batch = 256
	var logs []*raft.Log
	var term uint64
	flush := func() error {
		if len(logs) == 0 {
			return nil
		}
		if err := dst.StoreLogs(logs); err != nil {
			return fmt.Errorf("write raft log %d-%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
		}
		logs = logs[:0]
		return nil
	}
	for _, r := range runs {
		for ri := r.first; ri <= r.last; ri++ {
			p := r.phys + (ri - r.first)
			l := new(raft.Log)
			if err := src.GetLog(p, l); err != nil {
				return 0, 0, fmt.Errorf("read raft-wal entry %d: %w", p, err)
			}
			if len(l.Data) < 8 || binary.BigEndian.Uint64(l.Data) != ri {
				return 0, 0, fmt.Errorf("raft-wal entry %d does not hold Raft index %d", p, ri)
			}
			if l.Term < term {
				return 0, 0, fmt.Errorf("raft log entry %d has term %d after term %d: %w", ri, l.Term, term, errNotOldFormat)
			}
			term = l.Term
			l.Index, l.Data = ri, l.Data[8:]
			logs = append(logs, l)
			if len(logs) == batch {
				if err := flush(); err != nil {
					return 0, 0, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return 0, 0, err
	}
	if len(runs) > 0 {
		first, last = runs[0].first, runs[len(runs)-1].last
	}
	return first, last, nil
}
