package federation

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"

	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Self describes the local gateway to the federation.
type Self struct {
	Cluster string
	Region  string
	Zone    string
	Cloud   string
	// DataAddr is the host:port of this gateway's mTLS data-plane listener
	// as other gateways should dial it.
	DataAddr string
}

// nodeMeta is carried in memberlist node metadata (limit 512 bytes).
type nodeMeta struct {
	Cluster string `json:"c"`
	Region  string `json:"r"`
	Zone    string `json:"z,omitempty"`
	Cloud   string `json:"k,omitempty"`
	Data    string `json:"d"`
}

// Catalog is one gateway's view of the federation. It is safe for
// concurrent use; Snapshot never blocks.
type Catalog struct {
	log     *slog.Logger
	self    Self
	name    string
	ml      *memberlist.Memberlist
	mlReady atomic.Pointer[memberlist.Memberlist] // set once Create returns; read by gossip goroutines
	queue   *memberlist.TransmitLimitedQueue
	metrics *catalogMetrics

	mu      sync.Mutex
	entries map[string]*Entry // by node name
	states  map[string]string // node name -> alive, suspect, dead, left
	lastVer uint64            // version of our own entry
	watch   map[chan struct{}]struct{}

	snap atomic.Pointer[Snapshot]

	sendWG     sync.WaitGroup
	joinCancel context.CancelFunc
	joinDone   chan struct{}
	closeOnce  sync.Once
}

// New creates the local gateway's catalog and starts gossiping. It joins
// cfg.Join in the background, retrying until one peer answers or the
// catalog is shut down.
func New(cfg Config, self Self, services []Service, logger *slog.Logger, reg prometheus.Registerer) (*Catalog, error) {
	if logger == nil {
		logger = slog.Default()
	}
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip bind: %w", err)
	}
	name := cfg.NodeName
	if name == "" {
		h, _ := os.Hostname()
		name = self.Cluster + "-" + h
	}
	c := &Catalog{
		log:     logger.With("component", "catalog", "node", name),
		self:    self,
		name:    name,
		entries: map[string]*Entry{},
		states:  map[string]string{},
		watch:   map[chan struct{}]struct{}{},
		metrics: newCatalogMetrics(reg),
	}
	c.lastVer = uint64(time.Now().UnixNano())
	c.entries[name] = &Entry{
		Node: name, Cluster: self.Cluster, Region: self.Region, Zone: self.Zone, Cloud: self.Cloud,
		Gateway: self.DataAddr, Version: c.lastVer, Services: cloneServices(services),
	}
	c.states[name] = "alive"

	mc := memberlistConfig(cfg.Profile)
	mc.Name = name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port
	if cfg.Advertise != "" {
		ah, ap, err := splitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("gossip advertise: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if cfg.Key != "" {
		key, err := decodeKey(cfg.Key)
		if err != nil {
			return nil, err
		}
		mc.SecretKey = key
	}
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Logger = log.New(&slogWriter{log: c.log}, "", 0)
	c.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if ml := c.mlReady.Load(); ml != nil {
				return ml.NumMembers()
			}
			return 1
		},
		RetransmitMult: mc.RetransmitMult,
	}
	c.publish()
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	c.ml = ml
	c.mlReady.Store(ml)
	c.log.Info("gossip started", "addr", c.GossipAddr(), "cluster", self.Cluster, "region", self.Region)

	ctx, cancel := context.WithCancel(context.Background())
	c.joinCancel = cancel
	c.joinDone = make(chan struct{})
	go c.joinLoop(ctx, cfg.Join)
	return c, nil
}

// Name returns this gateway's node name.
func (c *Catalog) Name() string { return c.name }

// GossipAddr returns the address other gateways join at.
func (c *Catalog) GossipAddr() string {
	n := c.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

func (c *Catalog) joinLoop(ctx context.Context, peers []string) {
	defer close(c.joinDone)
	if len(peers) == 0 {
		return
	}
	backoff := 200 * time.Millisecond
	for {
		n, err := c.ml.Join(peers)
		if n > 0 {
			c.log.Info("joined federation", "contacted", n)
			return
		}
		c.log.Warn("join failed, retrying", "peers", peers, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Join contacts the given gossip addresses now and reports how many answered.
func (c *Catalog) Join(addrs []string) (int, error) {
	n, err := c.ml.Join(addrs)
	if err != nil && n == 0 {
		return 0, fmt.Errorf("join %v: %w", addrs, err)
	}
	return n, nil
}

// SetServices replaces the services this gateway exports and tells the
// federation at once.
func (c *Catalog) SetServices(services []Service) {
	c.mu.Lock()
	ver := max(uint64(time.Now().UnixNano()), c.lastVer+1)
	c.lastVer = ver
	e := *c.entries[c.name]
	e.Version = ver
	e.Services = cloneServices(services)
	c.entries[c.name] = &e
	c.mu.Unlock()
	c.publish()

	msg, err := encodeMessage("entry", []*Entry{&e})
	if err != nil {
		c.log.Error("encode catalog entry", "err", err)
		return
	}
	c.queue.QueueBroadcast(entryBroadcast{node: c.name, msg: msg})
	// Direct sends reach every member in one hop instead of waiting for
	// gossip rounds; the queue and push/pull repair anything lost.
	for _, m := range c.ml.Members() {
		if m.Name == c.name {
			continue
		}
		if err := c.ml.SendReliable(m, msg); err != nil {
			c.log.Debug("direct catalog send failed", "peer", m.Name, "err", err)
		}
		c.metrics.bytesSent.Add(float64(len(msg)))
	}
}

func (c *Catalog) sendOwn(n *memberlist.Node) {
	c.mu.Lock()
	own := c.entries[c.name]
	c.mu.Unlock()
	msg, err := encodeMessage("entry", []*Entry{own})
	if err != nil {
		c.log.Error("encode catalog entry", "err", err)
		return
	}
	if ml := c.mlReady.Load(); ml != nil {
		if err := ml.SendReliable(n, msg); err != nil {
			c.log.Debug("direct catalog send failed", "peer", n.Name, "err", err)
			return
		}
		c.metrics.bytesSent.Add(float64(len(msg)))
	}
}

// Snapshot returns the current immutable view of the catalog.
func (c *Catalog) Snapshot() *Snapshot { return c.snap.Load() }

// Watch returns a channel that receives a value (coalesced) after every
// change to the catalog, and a function that stops the watch.
func (c *Catalog) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.watch[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.watch, ch)
		c.mu.Unlock()
	}
}

// Members returns the number of gateways memberlist believes are alive.
func (c *Catalog) Members() int { return c.ml.NumMembers() }

// Shutdown leaves the pool gracefully (so others learn at once that this
// gateway is gone) and stops gossip.
func (c *Catalog) Shutdown(ctx context.Context) error {
	var err error
	c.closeOnce.Do(func() {
		c.joinCancel()
		<-c.joinDone
		timeout := time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		c.announceLeaving()
		if lerr := c.ml.Leave(timeout); lerr != nil {
			c.log.Warn("leave gossip pool", "err", lerr)
		}
		err = c.ml.Shutdown()
		c.sendWG.Wait()
		c.metrics.unregister()
	})
	return err
}

// announceLeaving tells every member directly that this gateway is going
// away on purpose, before memberlist's leave message.
func (c *Catalog) announceLeaving() {
	c.mu.Lock()
	c.lastVer++
	e := *c.entries[c.name]
	e.Version, e.Leaving = c.lastVer, true
	c.entries[c.name] = &e
	c.mu.Unlock()
	msg, err := encodeMessage("entry", []*Entry{&e})
	if err != nil {
		return
	}
	for _, m := range c.ml.Members() {
		if m.Name != c.name {
			_ = c.ml.SendReliable(m, msg)
		}
	}
}

// merge applies entries received from peers; newer versions win.
func (c *Catalog) merge(entries []*Entry) {
	changed := false
	c.mu.Lock()
	for _, e := range entries {
		if e.Node == c.name {
			// Our own entry echoed back, possibly from before a restart:
			// jump past it so our current state wins everywhere.
			if e.Version >= c.lastVer {
				c.lastVer = e.Version + 1
				cur := *c.entries[c.name]
				cur.Version = c.lastVer
				c.entries[c.name] = &cur
				changed = true
			}
			continue
		}
		if old, ok := c.entries[e.Node]; ok && old.Version >= e.Version {
			continue
		}
		c.entries[e.Node] = e
		if _, ok := c.states[e.Node]; !ok {
			c.states[e.Node] = "unknown"
		}
		changed = true
	}
	c.mu.Unlock()
	if changed {
		c.publish()
	}
}

func (c *Catalog) setState(node *memberlist.Node, state string) {
	c.mu.Lock()
	c.states[node.Name] = state
	if _, ok := c.entries[node.Name]; !ok && state == "alive" {
		// Known from metadata before its catalog arrives: routable address,
		// no services yet.
		var m nodeMeta
		if json.Unmarshal(node.Meta, &m) == nil && m.Cluster != "" {
			c.entries[node.Name] = &Entry{Node: node.Name, Cluster: m.Cluster, Region: m.Region, Zone: m.Zone, Cloud: m.Cloud, Gateway: m.Data}
		}
	}
	c.mu.Unlock()
	c.publish()
}

// publish rebuilds the snapshot and wakes watchers.
func (c *Catalog) publish() {
	c.mu.Lock()
	views := make([]*ClusterView, 0, len(c.entries))
	byState := map[string]int{}
	for node, e := range c.entries {
		st := c.states[node]
		byState[st]++
		views = append(views, &ClusterView{Entry: *e, State: st, Reachable: st == "alive"})
	}
	sortViews(views)
	c.snap.Store(&Snapshot{Local: c.name, Clusters: views})
	for ch := range c.watch {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	c.metrics.entries.Set(float64(len(views)))
	for _, st := range []string{"alive", "suspect", "dead", "left", "unknown"} {
		c.metrics.members.WithLabelValues(st).Set(float64(byState[st]))
	}
}

func cloneServices(in []Service) []Service {
	out := make([]Service, len(in))
	for i, s := range in {
		s.Ports = append([]Port(nil), s.Ports...)
		if s.Labels != nil {
			l := make(map[string]string, len(s.Labels))
			for k, v := range s.Labels {
				l[k] = v
			}
			s.Labels = l
		}
		out[i] = s
	}
	return out
}

type entryBroadcast struct {
	node string
	msg  []byte
}

func (b entryBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(entryBroadcast)
	return ok && o.node == b.node
}
func (b entryBroadcast) Message() []byte { return b.msg }
func (b entryBroadcast) Finished()       {}

// delegate implements memberlist.Delegate.
type delegate Catalog

func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Catalog)(d)
	b, _ := json.Marshal(nodeMeta{Cluster: c.self.Cluster, Region: c.self.Region, Zone: c.self.Zone, Cloud: c.self.Cloud, Data: c.self.DataAddr})
	if len(b) > limit {
		c.log.Error("node metadata too large", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	c := (*Catalog)(d)
	c.metrics.bytesRecv.Add(float64(len(b)))
	_, entries, err := DecodeMessage(b)
	if err != nil {
		c.metrics.decodeErrors.Inc()
		c.log.Warn("drop gossip message", "err", err)
		return
	}
	c.merge(entries)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	c := (*Catalog)(d)
	out := c.queue.GetBroadcasts(overhead, limit)
	for _, b := range out {
		c.metrics.bytesSent.Add(float64(len(b)))
	}
	return out
}

func (d *delegate) LocalState(bool) []byte {
	c := (*Catalog)(d)
	c.mu.Lock()
	entries := make([]*Entry, 0, len(c.entries))
	for _, e := range c.entries {
		if e.Version > 0 {
			entries = append(entries, e)
		}
	}
	c.mu.Unlock()
	b, err := encodeMessage("state", entries)
	if err != nil {
		c.log.Error("encode catalog state", "err", err)
		return nil
	}
	c.metrics.bytesSent.Add(float64(len(b)))
	return b
}

func (d *delegate) MergeRemoteState(b []byte, _ bool) {
	d.NotifyMsg(b)
}

// events implements memberlist.EventDelegate.
type events Catalog

func (e *events) NotifyJoin(n *memberlist.Node) {
	c := (*Catalog)(e)
	c.setState(n, "alive")
	if n.Name != c.name {
		// Hand a newcomer our entry at once rather than at the next
		// push/pull, which may be many seconds away.
		c.sendWG.Add(1)
		go func() {
			defer c.sendWG.Done()
			c.sendOwn(n)
		}()
	}
}
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Catalog)(e).setState(n, "alive") }
func (e *events) NotifyLeave(n *memberlist.Node) {
	c := (*Catalog)(e)
	st := "dead"
	c.mu.Lock()
	if e, ok := c.entries[n.Name]; ok && e.Leaving {
		st = "left"
	}
	c.mu.Unlock()
	c.log.Info("gateway gone", "peer", n.Name, "state", st)
	c.setState(n, st)
}

// slogWriter turns memberlist's log lines into slog records.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		line := sc.Bytes()
		level := slog.LevelDebug
		switch {
		case bytes.Contains(line, []byte("[ERR]")):
			level = slog.LevelError
		case bytes.Contains(line, []byte("[WARN]")):
			level = slog.LevelWarn
		case bytes.Contains(line, []byte("[INFO]")):
			level = slog.LevelInfo
		}
		w.log.Log(context.Background(), level, "memberlist", "msg", string(line))
	}
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)

type catalogMetrics struct {
	reg          prometheus.Registerer
	members      *prometheus.GaugeVec
	entries      prometheus.Gauge
	bytesSent    prometheus.Counter
	bytesRecv    prometheus.Counter
	decodeErrors prometheus.Counter
}

func newCatalogMetrics(reg prometheus.Registerer) *catalogMetrics {
	m := &catalogMetrics{
		reg: reg,
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_federation_members", Help: "Gateways known to this gateway, by gossip state.",
		}, []string{"state"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_catalog_entries", Help: "Catalog entries (one per gateway) held by this gateway.",
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_sent_bytes_total", Help: "Catalog bytes handed to gossip for sending.",
		}),
		bytesRecv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_received_bytes_total", Help: "Catalog bytes received from gossip.",
		}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_decode_errors_total", Help: "Gossip catalog messages dropped as malformed.",
		}),
	}
	if reg != nil {
		for _, col := range m.collectors() {
			reg.MustRegister(col)
		}
	}
	return m
}

func (m *catalogMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.members, m.entries, m.bytesSent, m.bytesRecv, m.decodeErrors}
}

func (m *catalogMetrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, col := range m.collectors() {
		m.reg.Unregister(col)
	}
}
