package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The routing-state snapshot format, used for Raft snapshots, the
// static-stability copy on disk and `strait state snapshot save`:
//
//	magic "STRAITSS" | format uint32 | body length uint64 | SHA-256 of body | body (JSON)
//
// All integers are big-endian. A reader refuses anything whose magic,
// format, length or checksum does not match, or whose trust domain is not
// its own.
const (
	snapshotMagic  = "STRAITSS"
	snapshotFormat = 1
	snapshotHeader = 8 + 4 + 8 + sha256.Size
	// MaxSnapshotBytes bounds the body of a snapshot.
	MaxSnapshotBytes = 256 << 20
)

// ErrBadSnapshot is wrapped by every refusal of a corrupted, truncated or
// foreign snapshot.
var ErrBadSnapshot = errors.New("bad routing-state snapshot")

// Version is one past version of a record.
type Version struct {
	Index     uint64    `json:"index"`
	Op        string    `json:"op"`
	Value     string    `json:"value,omitempty"`
	Time      time.Time `json:"time"`
	By        string    `json:"by,omitempty"`
	RequestID string    `json:"requestId,omitempty"`
}

type historyEntry struct {
	Kind     string    `json:"kind"`
	Key      string    `json:"key"`
	Versions []Version `json:"versions"`
}

type requestEntry struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
}

// snapshotBody is the content of a snapshot.
type snapshotBody struct {
	TrustDomain string         `json:"trustDomain"`
	Index       uint64         `json:"index"`
	SavedAt     time.Time      `json:"savedAt"`
	Records     []Record       `json:"records"`
	History     []historyEntry `json:"history,omitempty"`
	Requests    []requestEntry `json:"requests,omitempty"`
}

func encodeSnapshot(w io.Writer, body *snapshotBody) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	var hdr [snapshotHeader]byte
	copy(hdr[:8], snapshotMagic)
	binary.BigEndian.PutUint32(hdr[8:12], snapshotFormat)
	binary.BigEndian.PutUint64(hdr[12:20], uint64(len(b)))
	sum := sha256.Sum256(b)
	copy(hdr[20:], sum[:])
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// decodeSnapshot reads and checks a snapshot. trustDomain, when not empty,
// must match the snapshot's.
func decodeSnapshot(r io.Reader, trustDomain string) (*snapshotBody, error) {
	var hdr [snapshotHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if string(hdr[:8]) != snapshotMagic {
		return nil, fmt.Errorf("%w: not a strait state snapshot", ErrBadSnapshot)
	}
	if f := binary.BigEndian.Uint32(hdr[8:12]); f != snapshotFormat {
		return nil, fmt.Errorf("%w: format %d, want %d", ErrBadSnapshot, f, snapshotFormat)
	}
	n := binary.BigEndian.Uint64(hdr[12:20])
	if n > MaxSnapshotBytes {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds limit of %d", ErrBadSnapshot, n, MaxSnapshotBytes)
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, fmt.Errorf("%w: body truncated: %v", ErrBadSnapshot, err)
	}
	if sum := sha256.Sum256(buf.Bytes()); !bytes.Equal(sum[:], hdr[20:]) {
		return nil, fmt.Errorf("%w: checksum mismatch (corrupted)", ErrBadSnapshot)
	}
	var body snapshotBody
	if err := strictJSON(buf.Bytes(), &body); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrBadSnapshot, err)
	}
	if trustDomain != "" && body.TrustDomain != trustDomain {
		return nil, fmt.Errorf("%w: snapshot of trust domain %q, this federation is %q", ErrBadSnapshot, body.TrustDomain, trustDomain)
	}
	if err := validateRecords(body.Records, true); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	for _, r := range body.Records {
		if r.Index > body.Index {
			return nil, fmt.Errorf("%w: record %s/%s at index %d is newer than the snapshot (%d)", ErrBadSnapshot, r.Kind, r.Key, r.Index, body.Index)
		}
	}
	return &body, nil
}

// DecodeSnapshot checks a snapshot read from r and returns its records and
// the index it was taken at. trustDomain, when not empty, must match.
func DecodeSnapshot(r io.Reader, trustDomain string) (records []Record, index uint64, err error) {
	body, err := decodeSnapshot(r, trustDomain)
	if err != nil {
		return nil, 0, err
	}
	return body.Records, body.Index, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a crashed process leaves the old or the new file, never a
// torn one; with sync the data is also on disk before the rename.
func writeFileAtomic(path string, sync bool, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("sync %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	return nil
}
