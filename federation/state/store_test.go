package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/straitmesh/strait/identity"
)

const testPolicy = "apiVersion: strait.dev/v1alpha1\nkind: ResidencyPolicy\nmetadata: {name: eu}\n"

// testFed is a federation of stores on loopback: real Raft over the mTLS
// stream layer, real gRPC control servers.
type testFed struct {
	t     *testing.T
	ca    *identity.CA
	nodes []*stateNode
	tune  func(*Config)
	valid Validator
	// opts, when set, changes each node's Options before it opens.
	opts func(*stateNode, *Options)

	mu        sync.Mutex
	denials   []Denial                   // what the control servers refused
	approvals map[string][]ApprovalEvent // by node: the four-eyes steps it applied
}

type stateNode struct {
	name    string
	cfg     Config
	id      *identity.Bundle
	store   *Store
	ctl     *ControlServer
	ctlAddr string
	reg     *prometheus.Registry
	done    chan struct{}
}

func newTestFed(t *testing.T) *testFed {
	t.Helper()
	ca, err := identity.NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &testFed{t: t, ca: ca, approvals: map[string][]ApprovalEvent{}}
	// The first TempDir registers the removal of every later one; cleanups
	// run last-registered first, so the nodes stop before their data goes.
	t.TempDir()
	t.Cleanup(func() {
		for _, n := range f.nodes {
			n.stop()
		}
	})
	return f
}

func (f *testFed) bundle(id identity.ID) *identity.Bundle {
	f.t.Helper()
	cert, err := f.ca.IssueID(id, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := identity.NewBundle(cert, f.ca.Roots())
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// add starts a node; voters bootstrap together when expect voters exist.
func (f *testFed) add(voter bool, expect int) *stateNode {
	f.t.Helper()
	i := len(f.nodes)
	n := &stateNode{name: fmt.Sprintf("n%d", i)}
	role := identity.RoleGateway
	if voter {
		role = identity.RoleVoter
	}
	n.id = f.bundle(identity.ID{Role: role, Region: fmt.Sprintf("r%d", i), Cluster: n.name})
	n.cfg = DefaultConfig()
	n.cfg.DataDir = f.t.TempDir()
	n.cfg.Bind = "127.0.0.1:0"
	n.cfg.Voter = voter
	n.cfg.HeartbeatTimeout = 500 * time.Millisecond
	if voter {
		n.cfg.BootstrapExpect = expect
	}
	for _, o := range f.nodes {
		n.cfg.Join = append(n.cfg.Join, o.ctlAddr)
	}
	if f.tune != nil {
		f.tune(&n.cfg)
	}
	f.nodes = append(f.nodes, n)
	f.start(n, "127.0.0.1:0")
	return n
}

func (f *testFed) start(n *stateNode, ctlBind string) {
	f.t.Helper()
	ln, err := net.Listen("tcp", ctlBind)
	if err != nil {
		f.t.Fatal(err)
	}
	n.ctlAddr = ln.Addr().String()
	n.reg = prometheus.NewRegistry()
	if err := n.cfg.Validate(""); err != nil {
		f.t.Fatal(err)
	}
	o := Options{
		Name: n.name, TrustDomain: "strait.local", Cluster: n.name, Region: n.id.ID.Region, ControlAddr: n.ctlAddr,
		Identity: n.id, Validator: f.valid, Logger: slog.New(slog.DiscardHandler), Registry: n.reg,
		OnDenied: func(d Denial) {
			f.mu.Lock()
			f.denials = append(f.denials, d)
			f.mu.Unlock()
		},
		OnApproval: func(e ApprovalEvent) {
			f.mu.Lock()
			f.approvals[n.name] = append(f.approvals[n.name], e)
			f.mu.Unlock()
		},
	}
	if f.opts != nil {
		f.opts(n, &o)
	}
	n.store, err = Open(n.cfg, o)
	if err != nil {
		ln.Close()
		f.t.Fatal(err)
	}
	n.cfg.Bind = n.store.RaftAddr() // a restart keeps the address
	n.ctl = NewControlServer(n.store, n.id)
	n.done = make(chan struct{})
	go func() {
		defer close(n.done)
		_ = n.ctl.Serve(ln)
	}()
}

// stop closes the node like a crash of the process would, keeping its disk.
func (n *stateNode) stop() {
	if n.store == nil {
		return
	}
	n.ctl.Stop()
	<-n.done
	n.store.Close()
	n.store = nil
}

// restart reopens a stopped node on the same addresses and data dir.
func (f *testFed) restart(n *stateNode) {
	f.t.Helper()
	n.stop()
	f.start(n, n.ctlAddr)
}

func (f *testFed) client(n *stateNode) *ControlClient {
	f.t.Helper()
	c, err := DialControl(n.ctlAddr, f.bundle(identity.ID{Role: identity.RoleOperator, Name: "ops"}))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

func (f *testFed) leader() *stateNode {
	for _, n := range f.nodes {
		if n.store != nil && n.store.IsLeader() {
			return n
		}
	}
	return nil
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitMembers waits until every running node is in the configuration with
// its member record and a leader is known to all.
func (f *testFed) waitMembers() {
	f.t.Helper()
	waitFor(f.t, 20*time.Second, "every node to join", func() bool {
		for _, n := range f.nodes {
			if n.store == nil {
				continue
			}
			if !n.store.announced() || n.store.Leader() == "" {
				return false
			}
		}
		return true
	})
}

func (f *testFed) waitIndex(idx uint64) {
	f.t.Helper()
	waitFor(f.t, 10*time.Second, fmt.Sprintf("every node to apply index %d", idx), func() bool {
		for _, n := range f.nodes {
			if n.store != nil && n.store.View().Index < idx {
				return false
			}
		}
		return true
	})
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStateForwardingAndNonVoterReplication(t *testing.T) {
	f := newTestFed(t)
	for range 3 {
		f.add(true, 3)
	}
	nv := f.add(false, 0)
	f.waitMembers()

	var follower *stateNode
	for _, n := range f.nodes[:3] {
		if !n.store.IsLeader() {
			follower = n
		}
	}
	ctx := ctx10(t)
	resp, err := f.client(follower).Write(ctx, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "eu", Value: testPolicy})
	if err != nil {
		t.Fatalf("write through follower: %v", err)
	}
	if resp.Index == 0 {
		t.Fatal("write answered without a committed index")
	}
	f.waitIndex(resp.Index)
	for _, n := range f.nodes {
		r, ok := n.store.View().Get(KindPolicy, "eu")
		if !ok || r.Index != resp.Index || r.Value != testPolicy || r.By != "spiffe://strait.local/operator/ops" {
			t.Errorf("%s sees %+v (found %v); want the policy at index %d by the client", n.name, r, ok, resp.Index)
		}
	}
	// The follower sent the client to the leader rather than forwarding:
	// the leader authorized the operator's own certificate.
	if got := testutil.ToFloat64(follower.store.metrics.forwarded); got != 0 {
		t.Errorf("follower forwarded %v writes, want 0", got)
	}

	peers, err := f.client(nv).Peers(ctx, &PeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	voters, nonVoters, leaders := 0, 0, 0
	for _, p := range peers.Peers {
		if p.Voter {
			voters++
		} else {
			nonVoters++
			if p.ID != nv.name || p.ControlAddr != nv.ctlAddr {
				t.Errorf("non-voter %+v, want %s at %s", p, nv.name, nv.ctlAddr)
			}
		}
		if p.Leader {
			leaders++
		}
	}
	if voters != 3 || nonVoters != 1 || leaders != 1 {
		t.Errorf("peers %+v: want 3 voters, 1 non-voter, 1 leader", peers.Peers)
	}

	// A consistent read through the non-voter sees the write.
	rr, err := f.client(nv).Read(ctx, &ReadRequest{Kind: KindPolicy, Key: "eu", Consistent: true})
	if err != nil || len(rr.Records) != 1 || rr.Index < resp.Index || rr.Node != f.leader().name {
		t.Fatalf("consistent read via non-voter: %+v, %v", rr, err)
	}
	// Metrics on the gateway's registry describe the replica.
	mfs, err := nv.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"strait_state_raft_state", "strait_state_commit_index", "strait_state_applied_index", "strait_state_leader", "strait_state_apply_seconds", "strait_state_stale"} {
		if !names[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
}

func TestStateIdempotentRetries(t *testing.T) {
	f := newTestFed(t)
	for range 3 {
		f.add(true, 3)
	}
	f.waitMembers()
	ctx := ctx10(t)
	req := &WriteRequest{Op: OpPut, Kind: KindFailover, Key: "demo/ledger", Value: `{"priority":["eu-west-1","eu-west-2"]}`, RequestID: "req-1"}
	first, err := f.client(f.nodes[0]).Write(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.client(f.nodes[1]).Write(ctx, &WriteRequest{Op: OpPut, Kind: KindFailover, Key: "demo/ledger", Value: `{"priority":["eu-west-2"]}`})
	if err != nil {
		t.Fatal(err)
	}
	// The same request again, through another gateway, after another write:
	// it answers with the first index and changes nothing.
	again, err := f.client(f.nodes[2]).Write(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Index != first.Index || !again.Duplicate || first.Duplicate {
		t.Fatalf("retry answered %+v, first %+v: want the first index, marked duplicate", again, first)
	}
	f.waitIndex(other.Index)
	h, err := f.client(f.nodes[2]).History(ctx, &HistoryRequest{Kind: KindFailover, Key: "demo/ledger"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Versions) != 2 || h.Versions[0].Index != first.Index || h.Versions[1].Index != other.Index {
		t.Fatalf("history %+v: want exactly the two distinct writes", h.Versions)
	}
	r, _ := f.nodes[0].store.View().Get(KindFailover, "demo/ledger")
	if r.Value != `{"priority":["eu-west-2"]}` || r.Created != first.Index {
		t.Fatalf("record %+v: the retry must not have overwritten the later write", r)
	}
}

func TestStateRejectsBadPayloads(t *testing.T) {
	f := newTestFed(t)
	f.valid = func(kind string, payload []byte) error {
		if kind == KindPolicy && bytes.Contains(payload, []byte("forbidden")) {
			return errors.New("class forbidden: unknown region group")
		}
		return nil
	}
	f.add(true, 1)
	f.waitMembers()
	ctx := ctx10(t)
	c := f.client(f.nodes[0])
	before := f.nodes[0].store.raft.LastIndex()
	for _, tc := range []struct {
		name string
		req  WriteRequest
		want string
	}{
		{"policy without apiVersion", WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "p", Value: "kind: ResidencyPolicy\n"}, "missing apiVersion"},
		{"policy not yaml", WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "p", Value: "a: [b\n"}, "not YAML"},
		{"policy a list", WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "p", Value: "- a\n"}, "want a YAML mapping"},
		{"empty payload", WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "p"}, "payload is empty"},
		{"validator hook", WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "p", Value: testPolicy + "spec: forbidden\n"}, "unknown region group"},
		{"failover unknown field", WriteRequest{Op: OpPut, Kind: KindFailover, Key: "a/b", Value: `{"prio":["x"]}`}, "unknown field"},
		{"failover bad cluster", WriteRequest{Op: OpPut, Kind: KindFailover, Key: "a/b", Value: `{"priority":["Not A Label"]}`}, "not a DNS label"},
		{"bad service key", WriteRequest{Op: OpPut, Kind: KindExport, Key: "ledger", Value: `{"clusters":[]}`}, "want namespace/name"},
		{"unknown kind", WriteRequest{Op: OpPut, Kind: "route", Key: "x", Value: "{}"}, "cannot be written"},
		{"member kind", WriteRequest{Op: OpPut, Kind: KindMember, Key: "x", Value: `{"raftAddr":"a:1","controlAddr":"b:2"}`}, "cannot be written"},
		{"trust not pem", WriteRequest{Op: OpPut, Kind: KindTrust, Key: "strait.local", Value: "hello"}, "PEM certificates"},
		{"unknown op", WriteRequest{Op: "merge", Kind: KindPolicy, Key: "p", Value: testPolicy}, "want put or delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Write(ctx, &tc.req)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
	if after := f.nodes[0].store.raft.LastIndex(); after != before {
		t.Fatalf("log grew from %d to %d: rejected writes reached the log", before, after)
	}
	if _, err := c.Write(ctx, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "p", Value: testPolicy}); err != nil {
		t.Fatalf("a valid write after the rejected ones: %v", err)
	}
}

func TestStateSnapshotRestoreAndCompaction(t *testing.T) {
	f := newTestFed(t)
	f.tune = func(c *Config) { c.SnapshotThreshold, c.TrailingLogs = 8, 4 }
	for range 3 {
		f.add(true, 3)
	}
	f.waitMembers()
	ctx := ctx10(t)
	c := f.client(f.nodes[1])
	put := func(kind, key, val string) uint64 {
		t.Helper()
		r, err := c.Write(ctx, &WriteRequest{Op: OpPut, Kind: kind, Key: key, Value: val})
		if err != nil {
			t.Fatalf("put %s %s: %v", kind, key, err)
		}
		return r.Index
	}
	put(KindPolicy, "eu", testPolicy)
	put(KindCluster, "eu-west-1", `{"region":"eu-west"}`)
	idx := put(KindExport, "demo/ledger", `{"clusters":["eu-west-1"]}`)
	f.waitIndex(idx)
	snap, err := c.Snapshot(ctx, &SnapshotRequest{})
	if err != nil || snap.Index < idx {
		t.Fatalf("snapshot: %+v %v", snap, err)
	}

	// Change everything, then restore.
	put(KindPolicy, "eu", strings.Replace(testPolicy, "eu}", "eu2}", 1))
	put(KindCluster, "us-east-1", `{"region":"us-east"}`)
	if _, err := c.Write(ctx, &WriteRequest{Op: OpDelete, Kind: KindExport, Key: "demo/ledger"}); err != nil {
		t.Fatal(err)
	}
	rr, err := f.client(f.nodes[2]).Restore(ctx, &RestoreRequest{Data: snap.Data})
	if err != nil || rr.Records != 3 {
		t.Fatalf("restore: %+v %v", rr, err)
	}
	f.waitIndex(rr.Index)
	for _, n := range f.nodes {
		v := n.store.View()
		users := 0
		for _, r := range v.List("") {
			if r.Kind != KindMember {
				users++
			}
			// Records the restore changed carry its index; the unchanged
			// one keeps its version.
			changed := r.Kind == KindPolicy || r.Kind == KindExport
			if changed && r.Index != rr.Index || r.Kind == KindCluster && r.Index >= idx {
				t.Errorf("%s: restored %s/%s carries index %d (restore at %d)", n.name, r.Kind, r.Key, r.Index, rr.Index)
			}
		}
		p, _ := v.Get(KindPolicy, "eu")
		_, us := v.Get(KindCluster, "us-east-1")
		_, ledger := v.Get(KindExport, "demo/ledger")
		if users != 3 || p.Value != testPolicy || us || !ledger || v.Count(KindMember) != 3 {
			t.Errorf("%s after restore: %d user records, policy %q, us-east-1 %v, ledger %v, %d members", n.name, users, p.Value, us, ledger, v.Count(KindMember))
		}
	}

	// Corrupted, truncated and foreign snapshots are refused before the log.
	before := f.leader().store.raft.LastIndex()
	corrupt := bytes.Clone(snap.Data)
	corrupt[len(corrupt)-3] ^= 0x20
	var foreign bytes.Buffer
	if err := encodeSnapshot(&foreign, &snapshotBody{TrustDomain: "other.example", Index: 1, Records: []Record{}}); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"corrupted": corrupt, "truncated": snap.Data[:len(snap.Data)/2], "foreign": foreign.Bytes(), "not a snapshot": []byte("hello")} {
		if _, err := c.Restore(ctx, &RestoreRequest{Data: data}); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s snapshot: err = %v, want ErrBadSnapshot", name, err)
		}
	}
	if after := f.leader().store.raft.LastIndex(); after != before {
		t.Fatalf("log grew from %d to %d on refused restores", before, after)
	}

	// Compaction: a Raft snapshot truncates the log; a new replica catches
	// up from the snapshot.
	var last uint64
	for i := range 20 {
		last = put(KindCluster, fmt.Sprintf("c%d", i), `{"region":"r"}`)
	}
	ld := f.leader()
	if err := ld.store.raft.Snapshot().Error(); err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
	first, err := ld.store.logs.FirstIndex()
	if err != nil || first <= 1 {
		t.Fatalf("log first index %d (%v) after snapshot: want the log compacted", first, err)
	}
	nv := f.add(false, 0)
	f.waitMembers()
	f.waitIndex(last)
	if n := nv.store.View().Count(KindCluster); n != 21 {
		t.Fatalf("new replica has %d clusters, want 21", n)
	}
}

func TestStateStaticStability(t *testing.T) {
	f := newTestFed(t)
	for range 3 {
		f.add(true, 3)
	}
	f.waitMembers()
	ctx := ctx10(t)
	w, err := f.client(f.nodes[0]).Write(ctx, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "eu", Value: testPolicy})
	if err != nil {
		t.Fatal(err)
	}
	f.waitIndex(w.Index)
	survivor := f.nodes[2]
	// Let the last applied state reach the disk, then lose the quorum.
	waitFor(t, 5*time.Second, "state on disk", func() bool {
		_, err := readStateFile(survivor.cfg.DataDir)
		return err == nil
	})
	stopAt := time.Now()
	f.nodes[0].stop()
	f.nodes[1].stop()
	f.restart(survivor)

	v := survivor.store.View()
	r, ok := v.Get(KindPolicy, "eu")
	if !ok || r.Index != w.Index || v.Index < w.Index {
		t.Fatalf("restarted without quorum: view at %d, policy %+v (%v); want the last applied state", v.Index, r, ok)
	}
	h := survivor.store.Health()
	if !h.Stale || h.StaleSince.IsZero() || h.StaleSince.After(stopAt.Add(time.Second)) || h.Leader != "" {
		t.Fatalf("health %+v: want stale since before the quorum was lost", h)
	}
	if _, err := f.client(survivor).Read(ctx, &ReadRequest{Kind: KindPolicy, Key: "eu"}); err != nil {
		t.Fatalf("local read without quorum: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := f.client(survivor).Write(short, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "x", Value: testPolicy}); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("write without quorum: err = %v, want ErrNoLeader", err)
	}

	// The quorum comes back: the state is fresh again and writes work.
	f.restart(f.nodes[0])
	f.restart(f.nodes[1])
	waitFor(t, 20*time.Second, "a leader", func() bool { return !survivor.store.Health().Stale })
	w2, err := f.client(survivor).Write(ctx, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "x", Value: testPolicy})
	if err != nil || w2.Index <= w.Index {
		t.Fatalf("write after recovery: %+v %v", w2, err)
	}
}

func readStateFile(dir string) (*snapshotBody, error) {
	f, err := os.Open(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodeSnapshot(f, "")
}

// TestStateReplaceDeadVoter follows the operator guide: a dead voter is
// removed through any gateway, a replacement joins as a voter, and the
// federation keeps accepting writes with a full set of voters.
func TestStateReplaceDeadVoter(t *testing.T) {
	f := newTestFed(t)
	for range 3 {
		f.add(true, 3)
	}
	f.waitMembers()
	ctx := ctx10(t)
	var dead, via *stateNode
	for _, n := range f.nodes {
		if !n.store.IsLeader() && dead == nil {
			dead = n
		} else {
			via = n
		}
	}
	dead.stop()
	if _, err := f.client(via).RemovePeer(ctx, &RemovePeerRequest{ID: f.leader().name}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("removing the leader: err = %v, want a refusal", err)
	}
	if _, err := f.client(via).RemovePeer(ctx, &RemovePeerRequest{ID: "nobody"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("removing an unknown server: err = %v", err)
	}
	if _, err := f.client(via).RemovePeer(ctx, &RemovePeerRequest{ID: dead.name}); err != nil {
		t.Fatalf("remove dead voter: %v", err)
	}
	repl := f.add(true, 0)
	f.nodes = slices.DeleteFunc(f.nodes, func(n *stateNode) bool { return n == dead })
	f.waitMembers()
	peers, err := f.client(repl).Peers(ctx, &PeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range peers.Peers {
		if !p.Voter {
			t.Errorf("%s is not a voter", p.ID)
		}
		ids = append(ids, p.ID)
	}
	if len(ids) != 3 || slices.Contains(ids, dead.name) || !slices.Contains(ids, repl.name) {
		t.Fatalf("voters %v: want the replacement instead of %s", ids, dead.name)
	}
	if _, ok := repl.store.View().Get(KindMember, dead.name); ok {
		t.Fatal("the removed voter's member record is still there")
	}
	w, err := f.client(repl).Write(ctx, &WriteRequest{Op: OpPut, Kind: KindPolicy, Key: "after", Value: testPolicy})
	if err != nil {
		t.Fatal(err)
	}
	f.waitIndex(w.Index)
}
