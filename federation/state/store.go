package state

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/retry"
)

// Options carries a Store's identity and dependencies.
type Options struct {
	// Name is the server's Raft ID: unique and stable across restarts (the
	// gateway's node name). Required.
	Name string
	// TrustDomain of the federation; snapshots of another are refused. Required.
	TrustDomain string
	// Cluster and Region describe the gateway in member records.
	Cluster, Region string
	// ControlAddr is the control API address other gateways forward to. Required.
	ControlAddr string
	// Identity is the gateway's mTLS identity, used by the default Raft
	// transport and the default forwarding client.
	Identity *identity.Bundle
	// Transport overrides the mTLS Raft transport (tests inject faults).
	Transport raft.Transport
	// Dial returns a control client for another gateway's control address.
	// Default: gRPC over mTLS with Identity.
	Dial func(addr string) (Control, error)
	// Validator checks payloads before they reach the log, after the
	// built-in checks. Optional.
	Validator Validator
	// Logger receives the store's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the store's metrics. Optional.
	Registry prometheus.Registerer
	// Now is the clock for staleness. Default time.Now.
	Now func() time.Time
	// OnDenied, when set, sees every change the control API refused
	// (the gateway writes it to its audit trail).
	OnDenied func(Denial)
	// OnApproval, when set, sees every step of a four-eyes change as this
	// replica applies it (approvals.go).
	OnApproval func(ApprovalEvent)
	// RaftListener, when set, wraps the mTLS Raft listener: the gateway
	// puts it in a connection budget (limits.listeners.raft). A wrapped
	// connection with an Established method is told when its TLS
	// handshake finished. Optional.
	RaftListener func(net.Listener) net.Listener
	// RaftDial, when set, opens the TCP connections beneath outbound
	// Raft's mTLS (the gateway's fault mode puts them under its rules).
	// Default: a net.Dialer. Optional.
	RaftDial func(ctx context.Context, addr string) (net.Conn, error)
	// CA signs certificate requests while this server leads, instead of
	// the intermediate of Config.CA (tests inject one with a clock).
	// Optional.
	CA *identity.Intermediate
	// HandshakeTimeout bounds each inbound Raft TLS handshake; a
	// connection that has not finished it by then is closed before Raft
	// sees it. Default 5s.
	HandshakeTimeout time.Duration
}

// Store is one gateway's replica of the routing state: a Raft server
// (voter or non-voter) with its state machine, its log on disk, and the
// client side of leader forwarding.
type Store struct {
	cfg   Config
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	fsm   *fsm
	raft  *raft.Raft
	logs  *wal.WAL // Raft's log and stable store
	snaps *raft.FileSnapshotStore
	trans raft.Transport
	// heartbeats gates trans's heartbeat fast path, closed first by Close.
	heartbeats *heartbeatGate
	self       Member
	ca         *identity.Intermediate // nil: signs no certificates

	metrics *storeMetrics
	started time.Time
	savedAt time.Time // of the state loaded from disk

	readyTerm atomic.Uint64 // term in which this leader's barrier completed

	mu      sync.Mutex
	known   map[string]ServerInfo // servers seen while bootstrapping
	clients map[string]Control

	persistCh chan struct{}
	watchMu   sync.Mutex // not mu: the FSM notifies while holding its own lock
	watch     map[chan struct{}]struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

const stateFile = "state.snap"

// Open opens (or creates) the routing state in cfg.DataDir and starts
// its Raft server. A voter with BootstrapExpect set bootstraps with its
// peers once it has seen enough of them; every server asks the gateways in
// cfg.Join to add it until the leader has.
func Open(cfg Config, opts Options) (s *Store, err error) {
	if opts.Name == "" || opts.TrustDomain == "" || opts.ControlAddr == "" {
		return nil, errors.New("open routing state: name, trust domain and control address are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s = &Store{cfg: cfg, opts: opts, log: opts.Logger.With("component", "state", "node", opts.Name), now: opts.Now,
		known: map[string]ServerInfo{}, clients: map[string]Control{}, persistCh: make(chan struct{}, 1)}
	s.started = s.now()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	st := s // "return nil, err" clears s before the cleanup runs
	defer func() {
		if err != nil {
			st.cancel()
			if st.metrics != nil {
				st.metrics.unregister()
			}
			if st.trans != nil && opts.Transport == nil {
				if c, ok := st.trans.(io.Closer); ok {
					c.Close()
				}
			}
			if st.logs != nil {
				st.logs.Close()
			}
		}
	}()
	for _, d := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "snapshots")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("routing state dir: %w", err)
		}
	}
	if s.ca = opts.CA; s.ca == nil && cfg.CA.Enabled() {
		if s.ca, err = identity.LoadIntermediate(cfg.CA.Intermediate, cfg.CA.IntermediateKey); err != nil {
			return nil, fmt.Errorf("state.ca: %w", err)
		}
	}
	if s.ca != nil && s.ca.TrustDomain != opts.TrustDomain {
		return nil, fmt.Errorf("state.ca: the intermediate is of trust domain %q, the federation of %q", s.ca.TrustDomain, opts.TrustDomain)
	}
	s.fsm = newFSM(opts.TrustDomain, s.log)
	if err := s.loadDisk(); err != nil {
		return nil, err
	}
	s.fsm.onApproval = opts.OnApproval
	s.fsm.onApply = func(*View) {
		select {
		case s.persistCh <- struct{}{}:
		default:
		}
		s.watchMu.Lock()
		for ch := range s.watch {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		s.watchMu.Unlock()
	}
	// Raft's debug and trace lines (every RPC, every append) stay out.
	hlog := newHCLog(s.log, "raft", hclog.Info)
	if s.logs, err = openLog(cfg.DataDir, s.log, hlog); err != nil {
		return nil, err
	}
	if s.snaps, err = raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "snapshots"), 2, hlog); err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	s.trans = opts.Transport
	if s.trans == nil {
		if opts.Identity == nil {
			return nil, errors.New("open routing state: an identity is required for the mTLS transport")
		}
		stream, err := listenStream(cfg.Bind, cfg.Advertise, opts, s.log, s.admitRaft)
		if err != nil {
			return nil, err
		}
		s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
		})
	}
	s.trans, s.heartbeats = gateHeartbeats(s.trans)
	s.self = Member{RaftAddr: string(s.trans.LocalAddr()), ControlAddr: opts.ControlAddr, Cluster: opts.Cluster, Region: opts.Region, Voter: cfg.Voter}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(opts.Name)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.HeartbeatTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = 10 * time.Second
	rc.Logger = hlog
	rc.NoLegacyTelemetry = true
	if s.raft, err = raft.NewRaft(rc, s.fsm, s.logs, s.logs, s.snaps, s.trans); err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.metrics = newStoreMetrics(s, opts.Registry)

	s.goLoop(s.persistLoop)
	s.goLoop(s.leaderLoop)
	s.goLoop(s.announceLoop)
	if cfg.Voter && cfg.BootstrapExpect > 0 && s.raft.LastIndex() == 0 {
		s.goLoop(s.bootstrapLoop)
	}
	v := s.fsm.View()
	s.log.Info("routing state opened", "raft", s.self.RaftAddr, "control", s.self.ControlAddr, "voter", cfg.Voter,
		"index", v.Index, "fromDisk", v.FromDisk)
	return s, nil
}

func (s *Store) goLoop(f func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
}

// loadDisk installs the last applied state this gateway wrote, so that it
// routes on it even if no leader can be reached (static stability).
func (s *Store) loadDisk() error {
	path := filepath.Join(s.cfg.DataDir, stateFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read last applied state: %w", err)
	}
	defer f.Close()
	body, err := decodeSnapshot(bufio.NewReader(f), s.opts.TrustDomain)
	if err != nil {
		// A torn or foreign copy must not stop the gateway: the log and the
		// leader will bring the state back.
		s.log.Error("ignoring unreadable last applied state", "file", path, "err", err)
		return nil
	}
	s.fsm.loadCached(body)
	s.savedAt = body.SavedAt
	return nil
}

// persistLoop writes the applied state to disk after changes, at most
// every 250ms, and once more at shutdown. The file is a cache of what Raft
// holds durably, so it is renamed into place without an fsync: commits do
// not wait for it and do not share the disk's flushes with it. A file
// lost to a power failure means falling back to Raft's snapshot and log.
func (s *Store) persistLoop(ctx context.Context) {
	var written uint64 = s.fsm.View().Index
	write := func() {
		v := s.fsm.View()
		if v.FromDisk || v.Index == written {
			return
		}
		body := &snapshotBody{TrustDomain: s.opts.TrustDomain, Index: v.Index, SavedAt: s.now().UTC(), Records: v.List("")}
		if body.Records == nil {
			body.Records = []Record{}
		}
		err := writeFileAtomic(filepath.Join(s.cfg.DataDir, stateFile), false, func(w io.Writer) error {
			bw := bufio.NewWriter(w)
			if err := encodeSnapshot(bw, body); err != nil {
				return err
			}
			return bw.Flush()
		})
		if err != nil {
			s.log.Error("persist applied state", "err", err)
			return
		}
		written = v.Index
	}
	for {
		select {
		case <-ctx.Done():
			write()
			return
		case <-s.persistCh:
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
			write()
		}
	}
}

// leaderLoop makes each new leader commit a barrier (so consistent reads
// see everything committed before its term) and record its own addresses.
func (s *Store) leaderLoop(ctx context.Context) {
	ch := s.raft.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-ch:
			if !isLeader {
				continue
			}
			s.log.Info("became routing-state leader", "term", s.raft.CurrentTerm())
			if _, err := s.ensureReady(ctx); err != nil {
				s.log.Warn("leader barrier", "err", err)
				continue
			}
			info := ServerInfo{ID: s.opts.Name, Member: s.self}
			if _, err := s.joinLocal(ctx, info); err != nil {
				s.log.Warn("record leader member", "err", err)
			}
		}
	}
}

// ensureReady returns the current term once this leader has applied a
// barrier in it.
func (s *Store) ensureReady(ctx context.Context) (uint64, error) {
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() == term {
		return term, nil
	}
	if err := s.await(ctx, s.raft.Barrier(timeoutOf(ctx, 5*time.Second))); err != nil {
		return 0, fmt.Errorf("barrier: %w", err)
	}
	if s.raft.State() == raft.Leader && s.raft.CurrentTerm() == term {
		s.readyTerm.Store(term)
	}
	return term, nil
}

// announceLoop asks the leader (through any reachable gateway) to add this
// server and record its addresses, until the configuration and the member
// record both match. It rechecks every 5s: addresses change across
// restarts. Failed attempts back off from 200ms to 2s; once this server
// was in place, a failing recheck retries every 2s (nothing is urgent).
func (s *Store) announceLoop(ctx context.Context) {
	const recheck, first, most = 5 * time.Second, 200 * time.Millisecond, 2 * time.Second
	b := retry.New(first, most)
	for {
		wait := recheck
		if s.announced() {
			b = retry.New(most, most)
		} else if err := s.announce(ctx); err != nil {
			s.log.Debug("join federation", "err", err)
			wait = b.Next()
		} else {
			b = retry.New(first, most)
			continue
		}
		if !retry.Sleep(ctx.Done(), wait) {
			return
		}
	}
}

func (s *Store) announced() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	found := false
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == s.opts.Name {
			found = string(srv.Address) == s.self.RaftAddr && (srv.Suffrage == raft.Voter) == s.cfg.Voter
		}
	}
	if !found {
		return false
	}
	r, ok := s.fsm.View().Get(KindMember, s.opts.Name)
	return ok && r.Value == memberValue(s.self)
}

func (s *Store) announce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req := &JoinRequest{Server: s.info()}
	if s.raft.State() == raft.Leader {
		_, err := s.joinLocal(ctx, req.Server)
		return err
	}
	var addrs []string
	if addr, ok := s.leaderControl(); ok {
		addrs = append(addrs, addr)
	}
	addrs = append(addrs, s.cfg.Join...)
	var errs []error
	for _, a := range addrs {
		if a == s.self.ControlAddr {
			continue
		}
		c, err := s.client(a)
		if err == nil {
			_, err = c.Join(ctx, req)
		}
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	if len(errs) == 0 {
		return ErrNoLeader
	}
	return errors.Join(errs...)
}

func (s *Store) info() ServerInfo {
	return ServerInfo{ID: s.opts.Name, Member: s.self, BootstrapExpect: s.cfg.BootstrapExpect, HasState: s.raft.LastIndex() > 0}
}

// bootstrapLoop waits until this voter has seen BootstrapExpect voters
// without state (itself included), then bootstraps with the
// BootstrapExpect lowest IDs among them. Voters that see the same set
// choose the same configuration; one that finds a peer with state joins
// instead.
func (s *Store) bootstrapLoop(ctx context.Context) {
	b := retry.New(100*time.Millisecond, time.Second)
	for {
		if s.raft.LastIndex() > 0 {
			return
		}
		for _, a := range s.cfg.Join {
			if a == s.self.ControlAddr {
				continue
			}
			c, err := s.client(a)
			if err != nil {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := c.Discover(cctx, &DiscoverRequest{Self: s.info()})
			cancel()
			if err != nil {
				s.log.Debug("discover peer", "addr", a, "err", err)
				continue
			}
			s.learn(resp.Self)
			for _, k := range resp.Known {
				s.learn(k)
			}
		}
		if done := s.maybeBootstrap(); done {
			return
		}
		if !b.Wait(ctx.Done()) {
			return
		}
	}
}

func (s *Store) learn(info ServerInfo) {
	if info.ID == "" || info.ID == s.opts.Name {
		return
	}
	s.mu.Lock()
	s.known[info.ID] = info
	s.mu.Unlock()
}

func (s *Store) maybeBootstrap() bool {
	s.mu.Lock()
	voters := []ServerInfo{s.info()}
	for _, k := range s.known {
		if k.HasState {
			s.mu.Unlock()
			s.log.Info("a peer already has routing state: joining instead of bootstrapping", "peer", k.ID)
			return true
		}
		if k.Member.Voter {
			if k.BootstrapExpect != s.cfg.BootstrapExpect {
				s.mu.Unlock()
				s.log.Error("peer expects a different number of voters: not bootstrapping", "peer", k.ID,
					"peerBootstrapExpect", k.BootstrapExpect, "bootstrapExpect", s.cfg.BootstrapExpect)
				return false
			}
			voters = append(voters, k)
		}
	}
	s.mu.Unlock()
	if len(voters) < s.cfg.BootstrapExpect {
		return false
	}
	sort.Slice(voters, func(i, j int) bool { return voters[i].ID < voters[j].ID })
	voters = voters[:s.cfg.BootstrapExpect]
	var conf raft.Configuration
	mine := false
	for _, v := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.ID), Address: raft.ServerAddress(v.Member.RaftAddr)})
		mine = mine || v.ID == s.opts.Name
	}
	if !mine {
		return true // the chosen voters will add this one
	}
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		s.log.Error("bootstrap", "err", err)
		return false
	}
	ids := make([]string, len(voters))
	for i, v := range voters {
		ids[i] = v.ID
	}
	s.log.Info("bootstrapped routing state", "voters", ids)
	return true
}

// client returns a cached control client for addr.
func (s *Store) client(addr string) (Control, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[addr]; ok {
		return c, nil
	}
	dial := s.opts.Dial
	if dial == nil {
		if s.opts.Identity == nil {
			return nil, errors.New("no identity to dial other gateways with")
		}
		dial = func(a string) (Control, error) { return DialControl(a, s.opts.Identity) }
	}
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	s.clients[addr] = c
	return c, nil
}

// leaderControl returns the control address of the current leader.
func (s *Store) leaderControl() (string, bool) {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return "", false
	}
	if string(id) == s.opts.Name {
		return s.self.ControlAddr, true
	}
	m, ok := s.member(string(id))
	if !ok {
		return "", false
	}
	return m.ControlAddr, true
}

func (s *Store) member(id string) (Member, bool) {
	r, ok := s.fsm.View().Get(KindMember, id)
	if !ok {
		return Member{}, false
	}
	var m Member
	if err := strictJSON([]byte(r.Value), &m); err != nil {
		return Member{}, false
	}
	return m, true
}

// Watch returns a channel that receives a value (coalesced) after every
// change applied to the state, and a function that stops the watch.
func (s *Store) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.watchMu.Lock()
	if s.watch == nil {
		s.watch = map[chan struct{}]struct{}{}
	}
	s.watch[ch] = struct{}{}
	s.watchMu.Unlock()
	return ch, func() {
		s.watchMu.Lock()
		delete(s.watch, ch)
		s.watchMu.Unlock()
	}
}

// View returns the routing state the gateway routes on. It never blocks.
func (s *Store) View() *View { return s.fsm.View() }

// Name returns the store's Raft server ID.
func (s *Store) Name() string { return s.opts.Name }

// RaftAddr returns the address other servers dial this one at.
func (s *Store) RaftAddr() string { return s.self.RaftAddr }

// IsLeader reports whether this server leads now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the ID of the current leader, or "".
func (s *Store) Leader() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// Health reports role, indexes and whether the state may be stale.
func (s *Store) Health() Health {
	v := s.fsm.View()
	h := Health{Node: s.opts.Name, Role: s.raft.State().String(), Voter: s.cfg.Voter, Leader: s.Leader(),
		Index: v.Index, Applied: s.fsm.appliedIndex(), Commit: s.raft.CommitIndex(), FromDisk: v.FromDisk, Records: map[string]int{}}
	for _, k := range append(userKinds, KindMember) {
		if n := v.Count(k); n > 0 {
			h.Records[k] = n
		}
	}
	since, stale := s.staleness()
	h.Stale, h.StaleSince = stale, since
	return h
}

// staleness returns when this server last had contact with a leader and
// whether that is longer ago than StaleAfter.
func (s *Store) staleness() (time.Time, bool) {
	now := s.now()
	if s.raft.State() == raft.Leader {
		return time.Time{}, false
	}
	last := s.raft.LastContact()
	if s.Leader() == "" || last.IsZero() {
		// No leader known: stale since the last contact, else since the
		// state on disk was written, else since start.
		switch {
		case !last.IsZero():
			return last, true
		case !s.savedAt.IsZero():
			return s.savedAt, true
		default:
			return s.started, now.Sub(s.started) > s.cfg.StaleAfter
		}
	}
	if now.Sub(last) > s.cfg.StaleAfter {
		return last, true
	}
	return time.Time{}, false
}

// Close stops the Raft server and writes the applied state to disk. It
// does not leave the configuration: a voter that is gone for good is
// removed with RemovePeer.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		var errs []error
		s.heartbeats.close()
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		s.wg.Wait()
		if s.opts.Transport == nil {
			if c, ok := s.trans.(io.Closer); ok {
				c.Close()
			}
		}
		if err := s.logs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
		s.mu.Lock()
		for _, c := range s.clients {
			if cl, ok := c.(io.Closer); ok {
				cl.Close()
			}
		}
		s.clients = map[string]Control{}
		s.mu.Unlock()
		s.metrics.unregister()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// await waits for a Raft future, but no longer than ctx allows or the
// store runs: a future raft never answers (seen for VerifyLeader when
// leadership ends at shutdown) must not hang a caller. The goroutine
// left behind in that case ends when raft answers or never.
func (s *Store) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for raft: %w", ctx.Err())
	case <-s.ctx.Done():
		return fmt.Errorf("%w: gateway shutting down", ErrNoLeader)
	}
}

// newRequestID returns a random request ID.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func timeoutOf(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return def
}

func memberValue(m Member) string {
	b, _ := jsonMarshal(m)
	return string(b)
}

// listenStream opens the mTLS Raft listener; admit decides, after the
// chain is verified, whether a peer may speak Raft to this server.
func listenStream(bind, advertise string, opts Options, log *slog.Logger, admit func(identity.ID) error) (*tlsStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen raft on %s: %w", bind, err)
	}
	adv := ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft advertise %s: %w", advertise, err)
		}
		adv = a
	}
	if opts.RaftListener != nil {
		ln = opts.RaftListener(ln)
	}
	server := opts.Identity.ServerConfig()
	verified := server.VerifyConnection
	server.VerifyConnection = func(cs tls.ConnectionState) error {
		if verified != nil {
			if err := verified(cs); err != nil {
				return err
			}
		}
		peer, err := opts.Identity.PeerID(cs)
		if err != nil {
			return err
		}
		return admit(peer)
	}
	s := newTLSStream(ln, adv, server, opts.Identity.ClientConfig("raft.strait"), opts.HandshakeTimeout, log)
	s.dial = opts.RaftDial
	return s, nil
}

// admitRaft lets a peer open Raft connections to this server: Raft RPCs
// are sent by voters only (the leader, candidates), so the peer must hold
// a voter identity, and, once this server knows the members, be one of
// them (a server that has not learned them yet is joining, and hears
// from the leader first). A refusal is counted, logged and handed to
// OnDenied.
func (s *Store) admitRaft(peer identity.ID) error {
	rule := ""
	switch {
	case peer.TrustDomain != s.opts.TrustDomain:
		rule = "raft-domain"
	case peer.Role != identity.RoleVoter:
		rule = "raft-voter"
	default:
		known, found := false, false
		for _, r := range s.fsm.View().List(KindMember) {
			var m Member
			if strictJSON([]byte(r.Value), &m) != nil || m.Cluster == "" {
				continue
			}
			known = true
			found = found || m.Cluster == peer.Cluster && m.Region == peer.Region
		}
		if !known || found {
			return nil
		}
		rule = "raft-member"
	}
	reason := fmt.Sprintf("%s may not speak Raft to this server (rule %s)", peer, rule)
	s.metrics.denied.WithLabelValues("Raft", rule).Inc()
	s.log.Warn("raft connection refused", "peer", peer.String(), "rule", rule)
	if s.opts.OnDenied != nil {
		s.opts.OnDenied(Denial{RPC: "Raft", Caller: peer.String(), Rule: rule, Reason: reason})
	}
	return errors.New(reason)
}
