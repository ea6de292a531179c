package state

import (
	"errors"
	"strings"
	"testing"

	"github.com/straitmesh/strait/identity"
)

// TestFourEyesPolicyChanges: with approvals: 2, the residency policy
// changes only after two operators other than its proposer approve the
// exact proposal; every other way to change it is refused, and every
// replica reports each step.
func TestFourEyesPolicyChanges(t *testing.T) {
	f := newTestFed(t)
	for range 3 {
		f.add(true, 3)
	}
	f.waitMembers()
	leader := f.leader()
	ctx := ctx10(t)
	op := func(name string) *ControlClient {
		t.Helper()
		c, err := DialControl(leader.ctlAddr, f.bundle(identity.ID{Role: identity.RoleOperator, Name: name}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice, bob, carol := op("alice"), op("bob"), op("carol")
	write := func(c *ControlClient, req *WriteRequest) (*WriteResponse, error) { return c.Write(ctx, req) }
	if _, err := write(alice, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "default", Value: testPolicy}); err != nil {
		t.Fatalf("policy before approvals are required: %v", err)
	}
	if _, err := write(alice, &WriteRequest{Op: OpPut, Kind: KindGovernance, Key: "policy", Value: `{"approvals": 2}`}); err != nil {
		t.Fatalf("require two approvals: %v", err)
	}
	changed := strings.Replace(testPolicy, "name: eu", "name: eu-changed", 1)
	digest := Digest(changed)
	refused := func(what string, err error, want error, text string) {
		t.Helper()
		if !errors.Is(err, want) || !strings.Contains(err.Error(), text) {
			t.Errorf("%s: %v; want %v mentioning %q", what, err, want, text)
		}
	}
	_, err := write(alice, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "default", Value: changed})
	refused("a direct policy write", err, ErrDenied, "rule approvals-required")
	_, err = write(alice, &WriteRequest{Op: OpDelete, Kind: KindPolicy, Key: "default"})
	refused("a direct policy delete", err, ErrDenied, "rule approvals-required")
	_, err = write(alice, &WriteRequest{Op: OpPut, Kind: KindGovernance, Key: "policy", Value: `{"approvals": 0}`})
	refused("lowering the approvals directly", err, ErrDenied, "rule approvals-required")

	if _, err := write(alice, &WriteRequest{Op: OpPropose, Kind: KindPolicy, Key: "default", Value: changed}); err != nil {
		t.Fatalf("propose: %v", err)
	}
	_, err = write(alice, &WriteRequest{Op: OpApprove, Kind: KindPolicy, Key: "default", Value: digest})
	refused("the proposer approves", err, ErrDenied, "rule four-eyes")
	_, err = write(bob, &WriteRequest{Op: OpApprove, Kind: KindPolicy, Key: "default", Value: Digest(testPolicy)})
	refused("an approval of another digest", err, ErrInvalid, "the pending proposal")
	for range 2 { // the second changes nothing
		if _, err := write(bob, &WriteRequest{Op: OpApprove, Kind: KindPolicy, Key: "default", Value: digest}); err != nil {
			t.Fatalf("bob approves: %v", err)
		}
	}
	if r, _ := leader.store.View().Get(KindPolicy, "default"); r.Value != testPolicy {
		t.Fatal("applied after one approval of two")
	}
	pending, err := alice.Read(ctx, &ReadRequest{Kind: KindProposal, Consistent: true})
	if err != nil || len(pending.Records) != 1 || !strings.Contains(pending.Records[0].Value, `"approvals":["spiffe://strait.local/operator/bob"]`) {
		t.Fatalf("pending: %+v, %v", pending, err)
	}
	w, err := write(carol, &WriteRequest{Op: OpApprove, Kind: KindPolicy, Key: "default", Value: digest})
	if err != nil {
		t.Fatalf("carol approves: %v", err)
	}
	f.waitIndex(w.Index)
	for _, n := range f.nodes {
		r, ok := n.store.View().Get(KindPolicy, "default")
		if !ok || r.Value != changed || r.Index != w.Index || r.By != "spiffe://strait.local/operator/alice" {
			t.Errorf("%s: policy %+v after the second approval; want the proposal, by its proposer", n.name, r)
		}
		if n.store.View().Count(KindProposal) != 0 {
			t.Errorf("%s: the proposal is still pending", n.name)
		}
		f.mu.Lock()
		var steps []string
		for _, e := range f.approvals[n.name] {
			steps = append(steps, e.Step)
			if e.Digest != digest {
				t.Errorf("%s: event %+v names another digest", n.name, e)
			}
		}
		f.mu.Unlock()
		if got := strings.Join(steps, ","); got != "proposed,approved,approved,applied" {
			t.Errorf("%s: steps %s", n.name, got)
		}
	}
	// A restore leaves the guarded records as they are.
	snap, err := alice.Snapshot(ctx, &SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	body, err := decodeSnapshot(strings.NewReader(string(snap.Data)), "strait.local")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range body.Records {
		if r.Kind == KindPolicy {
			body.Records[i].Value = testPolicy
		}
	}
	var buf strings.Builder
	if err := encodeSnapshot(&buf, body); err != nil {
		t.Fatal(err)
	}
	rw, err := alice.Restore(ctx, &RestoreRequest{Data: []byte(buf.String())})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	f.waitIndex(rw.Index)
	if r, _ := leader.store.View().Get(KindPolicy, "default"); r.Value != changed {
		t.Error("a restore changed the policy past the approvals")
	}
}
