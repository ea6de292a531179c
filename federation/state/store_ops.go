package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/straitmesh/strait/internal/retry"
)

var _ Control = (*Store)(nil)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// retryable reports whether an operation may succeed if tried again, at
// the same or another gateway (a write keeps its request ID).
func retryable(err error) bool {
	for _, e := range []error{ErrNoLeader, ErrNotLeader, raft.ErrNotLeader, raft.ErrLeadershipLost,
		raft.ErrLeadershipTransferInProgress, raft.ErrEnqueueTimeout, raft.ErrAbortedByRestore} {
		if errors.Is(err, e) {
			return true
		}
	}
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

// retry runs op until it succeeds, fails for good, or ctx ends, waiting
// 10ms doubling to 50ms (jittered) between attempts.
func (s *Store) retry(ctx context.Context, op func() error) error {
	b := retry.New(10*time.Millisecond, 50*time.Millisecond)
	for {
		err := op()
		if err == nil || !retryable(err) {
			return err
		}
		wait := b.Next()
		// Answer before the caller's deadline so that it learns why.
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait+50*time.Millisecond {
			return fmt.Errorf("%w (last error: %v)", ErrNoLeader, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w (last error: %v)", ErrNoLeader, ctx.Err(), err)
		case <-s.ctx.Done():
			return fmt.Errorf("%w: gateway shutting down (last error: %v)", ErrNoLeader, err)
		case <-time.After(wait):
		}
	}
}

// checkWrite validates a write before it reaches the log: the built-in
// shape of kind, key and payload, then the Validator.
func (s *Store) checkWrite(req *WriteRequest) error {
	if !isUserKind(req.Kind) {
		return fmt.Errorf("%w: kind %q cannot be written (want one of %v)", ErrInvalid, req.Kind, userKinds)
	}
	if err := ValidateKey(req.Kind, req.Key); err != nil {
		return err
	}
	switch req.Op {
	case OpPut:
		if err := ValidatePayload(req.Kind, []byte(req.Value)); err != nil {
			return err
		}
		if err := checkRecordPair(req.Kind, req.Key, []byte(req.Value)); err != nil {
			return err
		}
		if s.opts.Validator != nil {
			if err := s.opts.Validator(req.Kind, []byte(req.Value)); err != nil {
				return fmt.Errorf("%w: %s %s: %w", ErrInvalid, req.Kind, req.Key, err)
			}
		}
		if err := s.checkOwnTrust(req); err != nil {
			return err
		}
	case OpDelete:
		if req.Value != "" {
			return fmt.Errorf("%w: a delete carries no value", ErrInvalid)
		}
		if err := s.checkOwnTrust(req); err != nil {
			return err
		}
	case OpPropose:
		if !guarded(req.Kind) {
			return fmt.Errorf("%w: only policy and governance changes are proposed, not %s", ErrInvalid, req.Kind)
		}
		if err := ValidatePayload(req.Kind, []byte(req.Value)); err != nil {
			return err
		}
		if s.opts.Validator != nil {
			if err := s.opts.Validator(req.Kind, []byte(req.Value)); err != nil {
				return fmt.Errorf("%w: %s %s: %w", ErrInvalid, req.Kind, req.Key, err)
			}
		}
	case OpApprove:
		if !guarded(req.Kind) {
			return fmt.Errorf("%w: only policy and governance changes are approved, not %s", ErrInvalid, req.Kind)
		}
		if !digestRE.MatchString(req.Value) {
			return fmt.Errorf("%w: approve names the proposal by its digest (sha256:<64 hex digits>), not %q", ErrInvalid, req.Value)
		}
	default:
		return fmt.Errorf("%w: op %q, want put or delete", ErrInvalid, req.Op)
	}
	return nil
}

// Write puts or deletes a record. A follower forwards it to the leader;
// retries (here, or by the caller with the same request ID) apply once.
// The response carries the committed index.
func (s *Store) Write(ctx context.Context, req *WriteRequest) (*WriteResponse, error) {
	r := *req
	if r.records == nil {
		if err := s.checkWrite(&r); err != nil {
			s.metrics.writes.WithLabelValues("invalid").Inc()
			return nil, err
		}
	}
	if r.RequestID == "" {
		r.RequestID = newRequestID()
	}
	if !r.Forwarded || r.By == "" {
		r.By = callerOf(ctx)
	}
	var resp *WriteResponse
	err := s.retry(ctx, func() (err error) {
		resp, err = s.writeOnce(ctx, &r)
		return err
	})
	switch {
	case err == nil:
		s.metrics.writes.WithLabelValues("ok").Inc()
	case errors.Is(err, ErrInvalid):
		s.metrics.writes.WithLabelValues("invalid").Inc()
	default:
		s.metrics.writes.WithLabelValues("error").Inc()
	}
	return resp, err
}

// leaderClient returns the leader's control client for a request this
// gateway cannot answer itself. A request that was already forwarded once
// is not forwarded again: its sender learns that leadership moved.
func (s *Store) leaderClient(forwarded bool) (Control, error) {
	if forwarded {
		return nil, ErrNotLeader
	}
	addr, ok := s.leaderControl()
	if !ok {
		return nil, ErrNoLeader
	}
	c, err := s.client(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dial leader %s: %v", ErrNoLeader, addr, err)
	}
	return c, nil
}

func (s *Store) writeOnce(ctx context.Context, r *WriteRequest) (*WriteResponse, error) {
	if s.raft.State() == raft.Leader {
		return s.applyLocal(ctx, r)
	}
	c, err := s.leaderClient(r.Forwarded)
	if err != nil {
		return nil, err
	}
	fwd := *r
	fwd.Forwarded = true
	if r.records != nil {
		// A restore travels as a snapshot of its records.
		var buf bytes.Buffer
		if err := encodeSnapshot(&buf, &snapshotBody{TrustDomain: s.opts.TrustDomain, Index: 0, Records: zeroIndexes(r.records)}); err != nil {
			return nil, err
		}
		resp, err := c.Restore(ctx, &RestoreRequest{Data: buf.Bytes(), RequestID: r.RequestID})
		if err != nil {
			return nil, err
		}
		return &WriteResponse{Index: resp.Index}, nil
	}
	s.metrics.forwarded.Inc()
	return c.Write(ctx, &fwd)
}

func zeroIndexes(recs []Record) []Record {
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = Record{Kind: r.Kind, Key: r.Key, Value: r.Value}
	}
	return out
}

// applyLocal proposes the write on this leader and waits until it is
// committed and applied.
func (s *Store) applyLocal(ctx context.Context, r *WriteRequest) (*WriteResponse, error) {
	c := &command{Op: r.Op, Kind: r.Kind, Key: r.Key, Value: r.Value, RequestID: r.RequestID, By: r.By, Time: s.now().UTC()}
	if r.records != nil {
		c = &command{Op: OpRestore, Records: r.records, RequestID: r.RequestID, By: r.By, Time: c.Time}
	}
	b, err := encodeCommand(c)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	f := s.raft.Apply(b, timeoutOf(ctx, 10*time.Second))
	if err := s.await(ctx, f); err != nil {
		return nil, fmt.Errorf("apply %s: %w", c.Op, err)
	}
	s.metrics.applySeconds.Observe(time.Since(start).Seconds())
	res, ok := f.Response().(applyResult)
	if !ok {
		return nil, fmt.Errorf("apply %s: unexpected response %T", c.Op, f.Response())
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return &WriteResponse{Index: res.Index, Duplicate: res.Dup}, nil
}

// Read answers from this gateway's replica, or, for a consistent read,
// from the leader after it has confirmed its leadership.
func (s *Store) Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error) {
	if req.Kind != "" && !knownKind(req.Kind) {
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalid, req.Kind)
	}
	if req.Key != "" && req.Kind == "" {
		return nil, fmt.Errorf("%w: a key needs a kind", ErrInvalid)
	}
	if !req.Consistent {
		return s.answer(req, s.fsm.View()), nil
	}
	return onLeader(s, ctx, req.Forwarded, func() (*ReadResponse, error) {
		v, err := s.consistentView(ctx)
		if err != nil {
			return nil, err
		}
		return s.answer(req, v), nil
	}, func(c Control) (*ReadResponse, error) {
		fwd := *req
		fwd.Forwarded = true
		return c.Read(ctx, &fwd)
	})
}

// onLeader answers a request on the leader: with local when this gateway
// leads, else through the leader's control API with remote (which marks
// the request forwarded, so it is not forwarded twice), retrying while
// leadership moves.
func onLeader[R any](s *Store, ctx context.Context, forwarded bool, local func() (R, error), remote func(Control) (R, error)) (R, error) {
	var resp R
	err := s.retry(ctx, func() (err error) {
		if s.raft.State() == raft.Leader {
			resp, err = local()
			return err
		}
		c, err := s.leaderClient(forwarded)
		if err != nil {
			return err
		}
		resp, err = remote(c)
		return err
	})
	return resp, err
}

// consistentView returns a view that reflects every write committed
// before the call: read index = commit index of a leader that has
// committed in its term, confirmed by a round of heartbeats.
func (s *Store) consistentView(ctx context.Context) (*View, error) {
	term, err := s.ensureReady(ctx)
	if err != nil {
		return nil, err
	}
	idx := s.raft.CommitIndex()
	if err := s.await(ctx, s.raft.VerifyLeader()); err != nil {
		return nil, fmt.Errorf("verify leader: %w", err)
	}
	if s.raft.CurrentTerm() != term {
		return nil, ErrNotLeader
	}
	// The state machine sees commands only, and the commit index may name
	// a barrier, no-op or configuration entry: wait for the last command
	// at or below it.
	want, err := s.lastCommand(ctx, idx)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if s.fsm.appliedIndex() >= want {
			return s.fsm.View(), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for index %d: %w", want, ctx.Err())
		case <-tick.C:
		}
	}
}

// lastCommand returns the index of the last command entry at or below idx,
// or 0 when none is left in the log (compacted entries are in a snapshot
// the state machine already holds). Past a long run of other entries it
// falls back to a barrier, which waits until everything is applied.
func (s *Store) lastCommand(ctx context.Context, idx uint64) (uint64, error) {
	first, err := s.logs.FirstIndex()
	if err != nil {
		return 0, err
	}
	for i, n := idx, 0; i > 0 && i >= first; i, n = i-1, n+1 {
		if n == 1024 {
			if err := s.await(ctx, s.raft.Barrier(timeoutOf(ctx, 5*time.Second))); err != nil {
				return 0, fmt.Errorf("barrier: %w", err)
			}
			return 0, nil
		}
		var l raft.Log
		if err := s.logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				return 0, nil // compacted meanwhile
			}
			return 0, fmt.Errorf("read log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}

func (s *Store) answer(req *ReadRequest, v *View) *ReadResponse {
	resp := &ReadResponse{Index: v.Index, Node: s.opts.Name, Records: []Record{}}
	_, resp.Stale = s.staleness()
	switch {
	case req.Key != "":
		if r, ok := v.Get(req.Kind, req.Key); ok {
			resp.Records = append(resp.Records, r)
		}
	default:
		if l := v.List(req.Kind); l != nil {
			resp.Records = l
		}
	}
	return resp
}

// History returns the versions of one record kept by this replica.
func (s *Store) History(ctx context.Context, req *HistoryRequest) (*HistoryResponse, error) {
	if err := ValidateKey(req.Kind, req.Key); err != nil {
		return nil, err
	}
	return &HistoryResponse{Index: s.fsm.View().Index, Versions: s.fsm.History(req.Kind, req.Key)}, nil
}

// Discover records a peer's introduction and answers with this server and
// the servers it has seen (bootstrap).
func (s *Store) Discover(ctx context.Context, req *DiscoverRequest) (*DiscoverResponse, error) {
	s.learn(req.Self)
	resp := &DiscoverResponse{Self: s.info()}
	s.mu.Lock()
	for _, k := range s.known {
		resp.Known = append(resp.Known, k)
	}
	s.mu.Unlock()
	return resp, nil
}

// Join adds or updates a server; a follower forwards it to the leader.
func (s *Store) Join(ctx context.Context, req *JoinRequest) (*JoinResponse, error) {
	m := req.Server.Member
	if err := ValidateKey(KindMember, req.Server.ID); err != nil {
		return nil, err
	}
	if err := ValidatePayload(KindMember, []byte(memberValue(m))); err != nil {
		return nil, err
	}
	return onLeader(s, ctx, req.Forwarded, func() (*JoinResponse, error) {
		return s.joinLocal(ctx, req.Server)
	}, func(c Control) (*JoinResponse, error) {
		fwd := *req
		fwd.Forwarded = true
		return c.Join(ctx, &fwd)
	})
}

func (s *Store) joinLocal(ctx context.Context, info ServerInfo) (*JoinResponse, error) {
	timeout := timeoutOf(ctx, 10*time.Second)
	f := s.raft.GetConfiguration()
	if err := s.await(ctx, f); err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	id, addr := raft.ServerID(info.ID), raft.ServerAddress(info.Member.RaftAddr)
	var cur *raft.Server
	for _, srv := range f.Configuration().Servers {
		if srv.ID == id {
			srv := srv
			cur = &srv
		}
	}
	switch {
	case info.Member.Voter && (cur == nil || cur.Address != addr || cur.Suffrage != raft.Voter):
		if err := s.await(ctx, s.raft.AddVoter(id, addr, 0, timeout)); err != nil {
			return nil, fmt.Errorf("add voter %s: %w", id, err)
		}
		s.log.Info("voter added", "peer", id, "raft", addr)
	case !info.Member.Voter && cur != nil && cur.Suffrage == raft.Voter:
		if err := s.await(ctx, s.raft.DemoteVoter(id, 0, timeout)); err != nil {
			return nil, fmt.Errorf("demote %s: %w", id, err)
		}
		fallthrough
	case !info.Member.Voter && (cur == nil || cur.Address != addr):
		if err := s.await(ctx, s.raft.AddNonvoter(id, addr, 0, timeout)); err != nil {
			return nil, fmt.Errorf("add non-voter %s: %w", id, err)
		}
		s.log.Info("non-voter added", "peer", id, "raft", addr)
	}
	val := memberValue(info.Member)
	if r, ok := s.fsm.View().Get(KindMember, info.ID); ok && r.Value == val {
		return &JoinResponse{Index: r.Index}, nil
	}
	resp, err := s.applyLocal(ctx, &WriteRequest{Op: OpPut, Kind: KindMember, Key: info.ID, Value: val, By: callerOf(ctx)})
	if err != nil {
		return nil, err
	}
	return &JoinResponse{Index: resp.Index}, nil
}

// Peers lists the Raft configuration as this server knows it.
func (s *Store) Peers(ctx context.Context, req *PeersRequest) (*PeersResponse, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	leader := s.Leader()
	resp := &PeersResponse{Leader: leader, Index: f.Index(), Peers: []Peer{}}
	for _, srv := range f.Configuration().Servers {
		p := Peer{ID: string(srv.ID), RaftAddr: string(srv.Address), Voter: srv.Suffrage == raft.Voter, Leader: string(srv.ID) == leader}
		if m, ok := s.member(p.ID); ok {
			p.ControlAddr, p.Cluster, p.Region = m.ControlAddr, m.Cluster, m.Region
		}
		resp.Peers = append(resp.Peers, p)
	}
	return resp, nil
}

// RemovePeer removes a server from the configuration (to replace a dead
// voter) and forgets its member record.
func (s *Store) RemovePeer(ctx context.Context, req *RemovePeerRequest) (*RemovePeerResponse, error) {
	if err := ValidateKey(KindMember, req.ID); err != nil {
		return nil, err
	}
	return onLeader(s, ctx, req.Forwarded, func() (*RemovePeerResponse, error) {
		return s.removePeerLocal(ctx, req.ID)
	}, func(c Control) (*RemovePeerResponse, error) {
		fwd := *req
		fwd.Forwarded = true
		return c.RemovePeer(ctx, &fwd)
	})
}

func (s *Store) removePeerLocal(ctx context.Context, id string) (*RemovePeerResponse, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	found := false
	for _, srv := range f.Configuration().Servers {
		found = found || string(srv.ID) == id
	}
	if !found {
		return nil, fmt.Errorf("%w: no server %q in the configuration", ErrInvalid, id)
	}
	if id == s.opts.Name {
		return nil, fmt.Errorf("%w: %s is the leader; stop it first, then remove it through another gateway", ErrInvalid, id)
	}
	rf := s.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx, 10*time.Second))
	if err := s.await(ctx, rf); err != nil {
		return nil, fmt.Errorf("remove %s: %w", id, err)
	}
	if _, err := s.applyLocal(ctx, &WriteRequest{Op: OpDelete, Kind: KindMember, Key: id, By: callerOf(ctx)}); err != nil {
		return nil, err
	}
	s.log.Info("server removed", "peer", id)
	return &RemovePeerResponse{Index: rf.Index()}, nil
}

// Snapshot returns this replica's state in the snapshot format.
func (s *Store) Snapshot(ctx context.Context, req *SnapshotRequest) (*SnapshotResponse, error) {
	body := s.fsm.body(true)
	body.SavedAt = s.now().UTC()
	var buf bytes.Buffer
	if err := encodeSnapshot(&buf, body); err != nil {
		return nil, err
	}
	return &SnapshotResponse{Index: body.Index, Data: buf.Bytes()}, nil
}

// Restore checks a snapshot (format, checksum, trust domain, every
// record) and replaces every client-written record with its records
// through one log entry. Member records are kept: they describe this
// federation's servers, not the one the snapshot came from.
func (s *Store) Restore(ctx context.Context, req *RestoreRequest) (*RestoreResponse, error) {
	body, err := decodeSnapshot(bytes.NewReader(req.Data), s.opts.TrustDomain)
	if err != nil {
		return nil, err
	}
	var recs []Record
	for _, r := range body.Records {
		if r.Kind == KindMember || r.Kind == KindProposal {
			continue // pending approvals do not survive a restore
		}
		if s.opts.Validator != nil {
			if err := s.opts.Validator(r.Kind, []byte(r.Value)); err != nil {
				return nil, fmt.Errorf("%w: snapshot record %s %s: %w", ErrInvalid, r.Kind, r.Key, err)
			}
		}
		recs = append(recs, Record{Kind: r.Kind, Key: r.Key, Value: r.Value})
	}
	if recs == nil {
		recs = []Record{}
	}
	resp, err := s.Write(ctx, &WriteRequest{Op: OpRestore, RequestID: req.RequestID, records: recs})
	if err != nil {
		return nil, err
	}
	return &RestoreResponse{Index: resp.Index, Records: len(recs)}, nil
}
