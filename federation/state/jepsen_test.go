package state

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
)

var (
	jepsenDuration = flag.Duration("jepsen.duration", 6*time.Second, "how long the Jepsen-style test injects faults (make soak: minutes)")
	jepsenSeed     = flag.Int64("jepsen.seed", 0, "seed of the fault schedule; 0 picks one from the clock (printed)")
)

// faultNet connects in-memory Raft transports and injects faults between
// them: partitions, dropped requests and replies, delays. Faults are
// directed: from -> to.
type faultNet struct {
	mu      sync.Mutex
	rng     *rand.Rand
	trans   map[raft.ServerAddress]*raft.InmemTransport
	cut     map[[2]raft.ServerAddress]bool
	drop    float64       // probability that a request or its reply is lost
	delay   time.Duration // up to this much added to each message
	dropped atomic.Int64
	stores  map[string]*Store // control address -> running store
}

func newFaultNet(seed int64) *faultNet {
	return &faultNet{rng: rand.New(rand.NewSource(seed)), trans: map[raft.ServerAddress]*raft.InmemTransport{},
		cut: map[[2]raft.ServerAddress]bool{}, stores: map[string]*Store{}}
}

// attach creates addr's transport and connects it with every other one.
func (n *faultNet) attach(addr raft.ServerAddress) *faultTransport {
	_, t := raft.NewInmemTransportWithTimeout(addr, 200*time.Millisecond)
	n.mu.Lock()
	defer n.mu.Unlock()
	for a, o := range n.trans {
		t.Connect(a, o)
		o.Connect(addr, t)
	}
	n.trans[addr] = t
	return &faultTransport{InmemTransport: t, net: n, from: addr}
}

// detach disconnects addr from everyone, as a crashed process would be.
func (n *faultNet) detach(addr raft.ServerAddress) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.trans[addr]
	delete(n.trans, addr)
	for _, o := range n.trans {
		o.Disconnect(addr)
	}
	if t != nil {
		t.DisconnectAll()
		t.Close()
	}
}

func (n *faultNet) partition(groups ...[]raft.ServerAddress) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.cut[[2]raft.ServerAddress{a, b}] = true
				}
			}
		}
	}
}

func (n *faultNet) heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]raft.ServerAddress]bool{}
	n.drop, n.delay = 0, 0
}

func (n *faultNet) setLossy(drop float64, delay time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop, n.delay = drop, delay
}

// send decides the fate of one message from -> to: an error if it is
// lost, after sleeping for its delay.
func (n *faultNet) send(from, to raft.ServerAddress) error {
	n.mu.Lock()
	cut := n.cut[[2]raft.ServerAddress{from, to}]
	lost := n.drop > 0 && n.rng.Float64() < n.drop
	var d time.Duration
	if n.delay > 0 {
		d = time.Duration(n.rng.Int63n(int64(n.delay)))
	}
	n.mu.Unlock()
	if cut {
		return fmt.Errorf("partitioned from %s", to)
	}
	time.Sleep(d)
	if lost {
		n.dropped.Add(1)
		return fmt.Errorf("message to %s lost", to)
	}
	return nil
}

// faultTransport is one server's view of the faulty network. Requests and
// replies are each subject to faults: a lost reply means the request was
// delivered but the sender does not know.
type faultTransport struct {
	*raft.InmemTransport
	net  *faultNet
	from raft.ServerAddress
}

func (t *faultTransport) call(to raft.ServerAddress, rpc func() error) error {
	if err := t.net.send(t.from, to); err != nil {
		return err
	}
	if err := rpc(); err != nil {
		return err
	}
	return t.net.send(to, t.from)
}

func (t *faultTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (t *faultTransport) AppendEntries(id raft.ServerID, to raft.ServerAddress, a *raft.AppendEntriesRequest, r *raft.AppendEntriesResponse) error {
	return t.call(to, func() error { return t.InmemTransport.AppendEntries(id, to, a, r) })
}

func (t *faultTransport) RequestVote(id raft.ServerID, to raft.ServerAddress, a *raft.RequestVoteRequest, r *raft.RequestVoteResponse) error {
	return t.call(to, func() error { return t.InmemTransport.RequestVote(id, to, a, r) })
}

func (t *faultTransport) RequestPreVote(id raft.ServerID, to raft.ServerAddress, a *raft.RequestPreVoteRequest, r *raft.RequestPreVoteResponse) error {
	return t.call(to, func() error { return t.InmemTransport.RequestPreVote(id, to, a, r) })
}

func (t *faultTransport) InstallSnapshot(id raft.ServerID, to raft.ServerAddress, a *raft.InstallSnapshotRequest, r *raft.InstallSnapshotResponse, data io.Reader) error {
	return t.call(to, func() error { return t.InmemTransport.InstallSnapshot(id, to, a, r, data) })
}

func (t *faultTransport) TimeoutNow(id raft.ServerID, to raft.ServerAddress, a *raft.TimeoutNowRequest, r *raft.TimeoutNowResponse) error {
	return t.call(to, func() error { return t.InmemTransport.TimeoutNow(id, to, a, r) })
}

// procControl reaches another store in this process through the faulty
// network, as forwarding over gRPC would.
type procControl struct {
	net      *faultNet
	from, to string // control addresses; they double as Raft addresses
}

func (p procControl) target() (*Store, error) {
	if err := p.net.send(raft.ServerAddress(p.from), raft.ServerAddress(p.to)); err != nil {
		return nil, &remoteError{code: codes.Unavailable, msg: err.Error()}
	}
	p.net.mu.Lock()
	s := p.net.stores[p.to]
	p.net.mu.Unlock()
	if s == nil {
		return nil, &remoteError{code: codes.Unavailable, msg: p.to + " is down"}
	}
	return s, nil
}

func procCall[Req, Resp any](p procControl, ctx context.Context, req *Req, f func(*Store, context.Context, *Req) (*Resp, error)) (*Resp, error) {
	s, err := p.target()
	if err != nil {
		return nil, err
	}
	resp, err := f(s, ctx, req)
	if err != nil {
		// Errors cross the process boundary as the gRPC client maps them.
		return nil, fromStatus(p.to, "call", toStatus(err))
	}
	if err := p.net.send(raft.ServerAddress(p.to), raft.ServerAddress(p.from)); err != nil {
		return nil, &remoteError{code: codes.Unavailable, msg: err.Error()}
	}
	return resp, nil
}

func (p procControl) Write(ctx context.Context, r *WriteRequest) (*WriteResponse, error) {
	return procCall(p, ctx, r, (*Store).Write)
}
func (p procControl) Read(ctx context.Context, r *ReadRequest) (*ReadResponse, error) {
	return procCall(p, ctx, r, (*Store).Read)
}
func (p procControl) History(ctx context.Context, r *HistoryRequest) (*HistoryResponse, error) {
	return procCall(p, ctx, r, (*Store).History)
}
func (p procControl) Join(ctx context.Context, r *JoinRequest) (*JoinResponse, error) {
	return procCall(p, ctx, r, (*Store).Join)
}
func (p procControl) Discover(ctx context.Context, r *DiscoverRequest) (*DiscoverResponse, error) {
	return procCall(p, ctx, r, (*Store).Discover)
}
func (p procControl) Peers(ctx context.Context, r *PeersRequest) (*PeersResponse, error) {
	return procCall(p, ctx, r, (*Store).Peers)
}
func (p procControl) RemovePeer(ctx context.Context, r *RemovePeerRequest) (*RemovePeerResponse, error) {
	return procCall(p, ctx, r, (*Store).RemovePeer)
}
func (p procControl) Snapshot(ctx context.Context, r *SnapshotRequest) (*SnapshotResponse, error) {
	return procCall(p, ctx, r, (*Store).Snapshot)
}
func (p procControl) Restore(ctx context.Context, r *RestoreRequest) (*RestoreResponse, error) {
	return procCall(p, ctx, r, (*Store).Restore)
}
func (p procControl) SignCertificate(ctx context.Context, r *SignRequest) (*SignResponse, error) {
	return procCall(p, ctx, r, (*Store).SignCertificate)
}

// jepsenCluster is five voters on the faulty network, each with a real
// raft-wal log and snapshot store on disk, that can be killed and restarted.
type jepsenCluster struct {
	t     *testing.T
	net   *faultNet
	names []string
	dirs  map[string]string
	mu    sync.Mutex
	live  map[string]*Store
	trans map[string]*faultTransport
}

func (c *jepsenCluster) start(name string) {
	c.t.Helper()
	addr := raft.ServerAddress(name)
	tr := c.net.attach(addr)
	cfg := DefaultConfig()
	cfg.DataDir = c.dirs[name]
	cfg.Voter = true
	cfg.BootstrapExpect = len(c.names)
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.SnapshotThreshold, cfg.TrailingLogs = 64, 32
	cfg.StaleAfter = time.Second
	for _, n := range c.names {
		if n != name {
			cfg.Join = append(cfg.Join, n)
		}
	}
	s, err := Open(cfg, Options{
		Name: name, TrustDomain: "strait.local", ControlAddr: name, Transport: tr,
		Dial:   func(to string) (Control, error) { return procControl{net: c.net, from: name, to: to}, nil },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	c.mu.Lock()
	c.live[name], c.trans[name] = s, tr
	c.mu.Unlock()
	c.net.mu.Lock()
	c.net.stores[name] = s
	c.net.mu.Unlock()
}

// kill stops a voter abruptly: its network goes first, then the process.
func (c *jepsenCluster) kill(name string) {
	c.mu.Lock()
	s := c.live[name]
	delete(c.live, name)
	c.mu.Unlock()
	if s == nil {
		return
	}
	c.net.mu.Lock()
	delete(c.net.stores, name)
	c.net.mu.Unlock()
	c.net.detach(raft.ServerAddress(name))
	t0 := time.Now()
	s.Close()
	if d := time.Since(t0); d > time.Second {
		c.t.Logf("closing %s took %s", name, d)
	}
}

func (c *jepsenCluster) store(name string) *Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live[name]
}

func (c *jepsenCluster) leader() string {
	for _, n := range c.names {
		if s := c.store(n); s != nil && s.IsLeader() {
			return n
		}
	}
	return ""
}

type jInput struct {
	Key   string
	Write bool
	Value string
}

type jOutput struct {
	Value   string
	Unknown bool // a write whose outcome the client never learned
}

// registerModel is a register per key: a read returns the last write.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(jInput).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out := input.(jInput), output.(jOutput)
		if in.Write {
			return true, in.Value
		}
		return out.Value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(jInput), output.(jOutput)
		if in.Write {
			return fmt.Sprintf("put(%s, %s) unknown=%v", in.Key, in.Value, out.Unknown)
		}
		return fmt.Sprintf("get(%s) -> %q", in.Key, out.Value)
	},
}

// TestJepsenLinearizable runs five voters behind a fault-injecting
// transport (partitions, lost and delayed messages, killed and restarted
// voters) while clients write and read (consistent reads) through random
// gateways. The history must be linearizable (porcupine), and every
// acknowledged write must be applied, at the index it was acknowledged
// with, on every voter afterwards.
func TestJepsenLinearizable(t *testing.T) {
	seed := *jepsenSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -args -jepsen.seed=%d)", seed, seed)
	c := &jepsenCluster{t: t, net: newFaultNet(seed), dirs: map[string]string{}, live: map[string]*Store{}, trans: map[string]*faultTransport{}}
	for i := range 5 {
		name := fmt.Sprintf("v%d", i)
		c.names = append(c.names, name)
		c.dirs[name] = t.TempDir()
	}
	for _, n := range c.names {
		c.start(n)
	}
	t.Cleanup(func() {
		for _, n := range c.names {
			c.kill(n)
		}
	})
	waitFor(t, 30*time.Second, "a leader", func() bool { return c.leader() != "" })

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		histMu sync.Mutex
		ops    []porcupine.Operation
		acked  = map[string]uint64{} // request ID -> acknowledged index
	)
	record := func(op porcupine.Operation) {
		histMu.Lock()
		ops = append(ops, op)
		histMu.Unlock()
	}
	keys := []string{"k0", "k1", "k2"}
	stop := make(chan struct{})
	var clients sync.WaitGroup
	var seq atomic.Int64
	const maxOpsPerClient = 5000
	for cl := range 4 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			rng := rand.New(rand.NewSource(seed + int64(cl) + 1))
			for i := 0; i < maxOpsPerClient; i++ {
				select {
				case <-stop:
					return
				default:
				}
				node := c.store(c.names[rng.Intn(len(c.names))])
				if node == nil {
					continue
				}
				key := keys[rng.Intn(len(keys))]
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if rng.Intn(2) == 0 {
					n := seq.Add(1)
					val := fmt.Sprintf(`{"region":"r%d"}`, n)
					id := fmt.Sprintf("c%d-%d", cl, n)
					call := now()
					resp, err := node.Write(ctx, &WriteRequest{Op: OpPut, Kind: KindCluster, Key: key, Value: val, RequestID: id})
					ret := now()
					if err != nil {
						ret = math.MaxInt64 // may take effect at any time later
					} else {
						histMu.Lock()
						acked[id] = resp.Index
						histMu.Unlock()
					}
					record(porcupine.Operation{ClientId: cl, Input: jInput{Key: key, Write: true, Value: val}, Call: call, Output: jOutput{Unknown: err != nil}, Return: ret})
				} else {
					call := now()
					resp, err := node.Read(ctx, &ReadRequest{Kind: KindCluster, Key: key, Consistent: true})
					ret := now()
					if err == nil {
						val := ""
						if len(resp.Records) == 1 {
							val = resp.Records[0].Value
						}
						record(porcupine.Operation{ClientId: cl, Input: jInput{Key: key}, Call: call, Output: jOutput{Value: val}, Return: ret})
					}
				}
				cancel()
			}
		}()
	}

	// The nemesis: one fault per step, healed at the end of the step.
	rng := rand.New(rand.NewSource(seed))
	step := 700 * time.Millisecond
	faults := map[string]int{}
	for deadline := time.Now().Add(*jepsenDuration); time.Now().Before(deadline); {
		var killed []string
		switch f := rng.Intn(5); f {
		case 0: // isolate the leader
			if l := c.leader(); l != "" {
				var rest []raft.ServerAddress
				for _, n := range c.names {
					if n != l {
						rest = append(rest, raft.ServerAddress(n))
					}
				}
				c.net.partition([]raft.ServerAddress{raft.ServerAddress(l)}, rest)
				faults["isolate-leader"]++
			}
		case 1: // random majority/minority split
			perm := rng.Perm(len(c.names))
			var a, b []raft.ServerAddress
			for i, p := range perm {
				if i < 2 {
					a = append(a, raft.ServerAddress(c.names[p]))
				} else {
					b = append(b, raft.ServerAddress(c.names[p]))
				}
			}
			c.net.partition(a, b)
			faults["split"]++
		case 2: // lossy, slow network
			c.net.setLossy(0.2, 15*time.Millisecond)
			faults["lossy"]++
		case 3: // kill the leader
			if l := c.leader(); l != "" {
				c.kill(l)
				killed = append(killed, l)
				faults["kill-leader"]++
			}
		case 4: // kill two random voters (the quorum survives)
			for _, p := range rng.Perm(len(c.names))[:2] {
				c.kill(c.names[p])
				killed = append(killed, c.names[p])
			}
			faults["kill-two"]++
		}
		time.Sleep(step)
		c.net.heal()
		for _, n := range killed {
			c.start(n)
		}
		time.Sleep(step / 2)
	}
	close(stop)
	clients.Wait()
	t.Logf("faults %v, messages lost %d, operations %d, acknowledged writes %d", faults, c.net.dropped.Load(), len(ops), len(acked))

	// Everyone converges on the same state.
	waitFor(t, 30*time.Second, "a leader after healing", func() bool { return c.leader() != "" })
	ld := c.store(c.leader())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ld.consistentView(ctx); err != nil {
		t.Fatalf("leader after healing: %v", err)
	}
	final := ld.fsm.appliedIndex()
	waitFor(t, 30*time.Second, "every voter to apply the final index", func() bool {
		for _, n := range c.names {
			if c.store(n).fsm.appliedIndex() < final {
				return false
			}
		}
		return true
	})

	// Not vacuous: faults happened and work got done through them.
	reads := 0
	for _, op := range ops {
		if !op.Input.(jInput).Write {
			reads++
		}
	}
	if len(acked) < 20 || reads < 20 || len(faults) < 2 {
		t.Fatalf("too little happened to judge: %d acknowledged writes, %d reads, faults %v", len(acked), reads, faults)
	}

	// No acknowledged write is missing, on any voter.
	for _, n := range c.names {
		s := c.store(n)
		for id, idx := range acked {
			got, ok := s.fsm.requestIndex(id)
			if !ok || got != idx {
				t.Errorf("%s: acknowledged write %s at index %d: applied at %d (found %v)", n, id, idx, got, ok)
			}
		}
	}
	ref := ld.View()
	for _, n := range c.names {
		v := c.store(n).View()
		for _, k := range keys {
			a, _ := ref.Get(KindCluster, k)
			b, _ := v.Get(KindCluster, k)
			if a.Value != b.Value || a.Index != b.Index {
				t.Errorf("%s disagrees with the leader on %s: %+v vs %+v", n, k, b, a)
			}
		}
	}

	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, time.Minute)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("strait-jepsen-%d.html", seed))
		if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("history of %d operations is not linearizable (seed %d)", len(ops), seed)
	default:
		t.Fatalf("linearizability check did not finish (%s) for %d operations", res, len(ops))
	}
}
