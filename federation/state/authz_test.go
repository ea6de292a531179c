package state

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/identity"
)

// TestControlAuthorization: over real gRPC and mTLS, every change of the
// routing state is authorized by the caller's own certificate. Each
// attack below is refused with PermissionDenied naming its rule, counted
// and handed to OnDenied; the legitimate calls beside them work, through
// a follower too, and a write's author is the verified caller whatever
// the request says.
func TestControlAuthorization(t *testing.T) {
	f := newTestFed(t)
	for range 3 {
		f.add(true, 3)
	}
	nv := f.add(false, 0)
	f.waitMembers()
	leader := f.leader()
	var follower *stateNode
	for _, n := range f.nodes[:3] {
		if n != leader {
			follower = n
		}
	}
	as := func(id identity.ID, at *stateNode) *ControlClient {
		t.Helper()
		c, err := DialControl(at.ctlAddr, f.bundle(id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// An adversary holding a valid gateway certificate (cluster n3, the
	// non-voter's), and one holding a scoped operator's.
	gw := identity.ID{Role: identity.RoleGateway, Region: nv.id.ID.Region, Cluster: nv.name}
	scoped := identity.ID{Role: identity.RoleOperator, Name: "fo", Scope: KindFailover}
	ops := identity.ID{Role: identity.RoleOperator, Name: "alice"}
	ctx := ctx10(t)
	policy := &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "default", Value: testPolicy}

	for _, tc := range []struct {
		name string
		call func() error
		rule string
	}{
		{"a gateway writes the residency policy", func() error { _, err := as(gw, leader).Write(ctx, policy); return err }, "operator-writes"},
		{"a gateway writes through a follower, claiming to be forwarded by an operator", func() error {
			r := *policy
			r.Forwarded, r.By = true, "spiffe://strait.local/operator/alice"
			_, err := as(gw, follower).Write(ctx, &r)
			return err
		}, "operator-writes"},
		{"an operator scoped to failover writes a policy", func() error { _, err := as(scoped, leader).Write(ctx, policy); return err }, "operator-scope"},
		{"a scoped operator restores a snapshot", func() error {
			snap, err := as(ops, leader).Snapshot(ctx, &SnapshotRequest{})
			if err != nil {
				return err
			}
			_, err = as(scoped, leader).Restore(ctx, &RestoreRequest{Data: snap.Data})
			return err
		}, "operator-restore"},
		{"a gateway removes a voter", func() error {
			_, err := as(gw, leader).RemovePeer(ctx, &RemovePeerRequest{ID: follower.name})
			return err
		}, "operator-remove-peer"},
		{"a gateway joins as a voter of another cluster", func() error {
			_, err := as(gw, leader).Join(ctx, &JoinRequest{Server: ServerInfo{ID: "evil", Member: Member{RaftAddr: "127.0.0.1:1", ControlAddr: "127.0.0.1:2",
				Cluster: follower.name, Region: follower.id.ID.Region, Voter: true}}})
			return err
		}, "join-identity"},
		{"a gateway without a voter identity joins as a voter", func() error {
			_, err := as(gw, leader).Join(ctx, &JoinRequest{Server: ServerInfo{ID: nv.name, Member: Member{RaftAddr: nv.store.RaftAddr(), ControlAddr: nv.ctlAddr,
				Cluster: gw.Cluster, Region: gw.Region, Voter: true}}})
			return err
		}, "join-voter"},
		{"a gateway moves another cluster's server to its own address", func() error {
			_, err := as(gw, leader).Join(ctx, &JoinRequest{Server: ServerInfo{ID: follower.name, Member: Member{RaftAddr: "127.0.0.1:1", ControlAddr: "127.0.0.1:2",
				Cluster: gw.Cluster, Region: gw.Region}}})
			return err
		}, "join-owner"},
		{"an operator joins as a server", func() error {
			_, err := as(ops, leader).Join(ctx, &JoinRequest{Server: ServerInfo{ID: "ops", Member: Member{RaftAddr: "127.0.0.1:1", ControlAddr: "127.0.0.1:2"}}})
			return err
		}, "join-identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.denialsCopy())
			err := tc.call()
			if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "rule "+tc.rule) {
				t.Fatalf("err = %v, want PermissionDenied by rule %s", err, tc.rule)
			}
			d := f.denialsCopy()
			if len(d) != before+1 || d[len(d)-1].Rule != tc.rule || d[len(d)-1].Caller == "" {
				t.Errorf("denials %+v, want one more by rule %s with its caller", d[before:], tc.rule)
			}
		})
	}
	if _, ok := leader.store.View().Get(KindPolicy, "default"); ok {
		t.Fatal("a refused write reached the state")
	}
	var denied float64
	for _, n := range f.nodes {
		mfs, err := n.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "strait_state_denied_total" {
				for _, m := range mf.GetMetric() {
					denied += m.GetCounter().GetValue()
				}
			}
		}
	}
	if denied != float64(len(f.denialsCopy())) {
		t.Errorf("strait_state_denied_total sums to %v, want %d", denied, len(f.denialsCopy()))
	}

	// The legitimate calls: an operator writes through a follower (sent on
	// to the leader), and the author is the operator whatever it claims.
	r := *policy
	r.Forwarded, r.By = true, "spiffe://strait.local/operator/mallory"
	w, err := as(ops, follower).Write(ctx, &r)
	if err != nil {
		t.Fatalf("operator write through a follower: %v", err)
	}
	f.waitIndex(w.Index)
	if rec, ok := nv.store.View().Get(KindPolicy, "default"); !ok || rec.By != "spiffe://strait.local/operator/alice" {
		t.Errorf("record %+v: want the policy by the operator's own identity", rec)
	}
	if _, err := as(scoped, follower).Write(ctx, &WriteRequest{Op: OpPut, Kind: KindFailover, Key: "demo/ledger", Value: `{"priority":["n0"]}`}); err != nil {
		t.Errorf("scoped operator writes its kind: %v", err)
	}
	// Gateways still read.
	if _, err := as(gw, follower).Read(ctx, &ReadRequest{Kind: KindPolicy, Consistent: true}); err != nil {
		t.Errorf("a gateway reads: %v", err)
	}
	if _, err := as(ops, leader).RemovePeer(ctx, &RemovePeerRequest{ID: nv.name}); err != nil {
		t.Errorf("an operator removes a non-voter: %v", err)
	}

	// The Raft port takes connections from the voters it knows only.
	for _, tc := range []struct {
		id   identity.ID
		rule string
	}{
		{gw, "raft-voter"},
		{identity.ID{Role: identity.RoleVoter, Region: "r9", Cluster: "stranger"}, "raft-member"},
		{ops, "raft-voter"},
	} {
		before := len(f.denialsCopy())
		c, err := tls.Dial("tcp", leader.store.RaftAddr(), f.bundle(tc.id).ClientConfig("raft.strait"))
		if err == nil {
			// TLS 1.3: the server's verdict arrives with the first read.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Errorf("%s: Raft connection accepted", tc.id)
		}
		d := f.denialsCopy()
		if len(d) != before+1 || d[len(d)-1].Rule != tc.rule || d[len(d)-1].RPC != "Raft" {
			t.Errorf("%s: denials %+v, want one by rule %s", tc.id, d[before:], tc.rule)
		}
	}
}

func (f *testFed) denialsCopy() []Denial {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Denial(nil), f.denials...)
}
