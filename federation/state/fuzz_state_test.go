package state

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeCommand feeds arbitrary log entries to the command decoder:
// it must never panic, every failure must wrap ErrInvalid, and whatever it
// accepts must apply without error (but for the use of a join token the
// state does not hold, which the state machine refuses as ErrDenied).
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []*command{
		{Op: OpPut, Kind: KindPolicy, Key: "eu", Value: testPolicy, RequestID: "r1"},
		{Op: OpDelete, Kind: KindExport, Key: "demo/ledger"},
		{Op: OpRestore, Records: []Record{{Kind: KindCluster, Key: "a", Value: `{"region":"eu-west"}`}}},
		{Op: OpPut, Kind: KindMember, Key: "n1", Value: `{"raftAddr":"127.0.0.1:8300","controlAddr":"127.0.0.1:15012","voter":true}`},
		{Op: OpConsume, Kind: KindJoinToken, Key: "0123456789abcdef", By: "spiffe://strait.local/gateway/region/r/cluster/c",
			Value: `{"secretHash":"` + Digest("s") + `","cluster":"c","region":"r","role":"gateway","csr":"` + Digest("csr") + `"}`},
	} {
		b, err := encodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		fsm := newFSM("strait.local", discard())
		b2, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if res := fsm.Apply(raftLog(1, b2)).(applyResult); res.Err != nil && !(c.Op == OpConsume && errors.Is(res.Err, ErrDenied)) {
			t.Fatalf("accepted command does not apply: %v", res.Err)
		}
	})
}

// FuzzDecodeSnapshot feeds arbitrary bytes to the snapshot decoder: it
// must never panic, and every failure must wrap ErrBadSnapshot.
func FuzzDecodeSnapshot(f *testing.F) {
	var good bytes.Buffer
	if err := encodeSnapshot(&good, &snapshotBody{TrustDomain: "strait.local", Index: 7,
		Records: []Record{{Kind: KindPolicy, Key: "eu", Value: testPolicy, Index: 5, Created: 5}}}); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := decodeSnapshot(bytes.NewReader(b), "strait.local")
		if err != nil && !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("error %v does not wrap ErrBadSnapshot", err)
		}
	})
}

// FuzzValidatePayload checks every kind's payload validator against
// arbitrary input: no panics, failures wrap ErrInvalid.
func FuzzValidatePayload(f *testing.F) {
	for _, s := range []string{testPolicy, `{"priority":["a","b"]}`, `{"clusters":["a"],"ports":[80]}`, `{"region":"eu-west"}`, "- a\n", "a: [b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		for _, k := range append(UserKinds(), KindMember) {
			if err := ValidatePayload(k, []byte(payload)); err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s: error %v does not wrap ErrInvalid", k, err)
			}
		}
	})
}
