package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"net"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/internal/configfile"
	"github.com/straitmesh/strait/internal/retry"
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
	// ControlAddr is the gateway's control-API address, if any.
	ControlAddr string
}

// nodeMeta is carried in memberlist node metadata (limit 512 bytes).
type nodeMeta struct {
	Cluster string `json:"c"`
	Region  string `json:"r"`
	Zone    string `json:"z,omitempty"`
	Cloud   string `json:"k,omitempty"`
	Data    string `json:"d"`
	Control string `json:"g,omitempty"`
}

// Options are a catalog's dependencies; every field is optional.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Scope keeps region-only services away from other regions. nil: none.
	Scope Scope
	// Now is the clock for tombstone collection and certificate
	// validity. Default time.Now.
	Now func() time.Time
	// Signing binds this gateway's entry to its certificate and makes the
	// catalog accept only entries signed by their owners (sign.go). nil:
	// unsigned entries, for tests and development only.
	Signing *Signing
	// WrapTransport wraps the gossip transport (the gateway's fault
	// mode drops and delays packets in it). nil: none.
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// nodeData is everything known about one gateway.
type nodeData struct {
	nodeHeader
	public  map[string]*record // gossiped to everyone
	scoped  map[string]*record // sent only to gateways in allowed regions
	state   string
	stateAt time.Time
	maxVer  uint64       // newest version ever seen from this gateway
	view    *ClusterView // cached; nil when stale
	// verified is set once a signed entry of the node was accepted; a
	// node known only from memberlist's (unsigned) metadata is not shown.
	verified bool
}

// forgottenNode is what is kept of a collected gateway.
type forgottenNode struct {
	version uint64 // newest version seen; older copies are not resurrected
	cluster string // the node name stays bound to its cluster
}

// Catalog is one gateway's view of the federation. It is safe for
// concurrent use; Snapshot never blocks.
type Catalog struct {
	log     *slog.Logger
	self    Self
	name    string
	cfg     Config
	now     func() time.Time
	ml      *memberlist.Memberlist
	mlReady atomic.Pointer[memberlist.Memberlist] // set once Create returns; read by gossip goroutines
	closing atomic.Bool                           // Shutdown began
	queue   *memberlist.TransmitLimitedQueue
	keyring *memberlist.Keyring
	metrics *catalogMetrics

	// peers are copies of memberlist's members, taken in its event
	// callbacks (members.go).
	peersMu sync.Mutex
	peers   map[string]*memberlist.Node

	mu           sync.Mutex
	nodes        map[string]*nodeData
	forgotten    map[string]forgottenNode
	signer       *signer              // nil: unsigned
	ownKey       *signingKey          // the certificate our header and scoped records are signed with
	verifier     *verifier            // nil: accept unsigned entries
	trustGen     any                  // Signing.Generation when the held entries were last checked
	wantAt       map[string]time.Time // node -> when we last asked it for its whole entry
	answerAt     map[string]time.Time // node -> when we last answered its request
	rejectLog    map[string]time.Time // reason -> last log line
	lastVer      uint64
	ownCollected uint64 // newest version of our own collected tombstones
	scope        Scope
	scopeOf      map[string][]string // own service key -> allowed regions (restricted services only)
	watch        map[chan struct{}]struct{}
	order        []*nodeData // nodes sorted by cluster, node
	orderStale   bool        // set when nodes are added or removed
	pubReq       chan struct{}
	stateGen     uint64 // bumped on every change to public state
	stateMsg     []byte // cached LocalState for stateGen
	stateAt      uint64
	keyWaits     map[string]chan keyAck

	snap atomic.Pointer[Snapshot]

	sends      chan sendJob
	bg         sync.WaitGroup
	ctx        context.Context
	cancel     context.CancelFunc
	closeOnce  sync.Once
	packetSize int
}

type sendJob struct {
	to  *memberlist.Node
	msg []byte
}

// New creates the local gateway's catalog and starts gossiping. It joins
// cfg.Join in the background, retrying until one peer answers or the
// catalog is shut down.
func New(cfg Config, self Self, services []Service, opts Options) (*Catalog, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := cfg.Validate(""); err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	host, port, _ := configfile.HostPort(cfg.Bind)
	name := cfg.NodeName
	if name == "" {
		h, _ := os.Hostname()
		name = self.Cluster + "-" + h
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Catalog{peers: map[string]*memberlist.Node{},
		log:       opts.Logger.With("component", "catalog", "node", name),
		self:      self,
		name:      name,
		cfg:       cfg,
		now:       opts.Now,
		nodes:     map[string]*nodeData{},
		forgotten: map[string]forgottenNode{},
		wantAt:    map[string]time.Time{},
		answerAt:  map[string]time.Time{},
		rejectLog: map[string]time.Time{},
		scope:     opts.Scope,
		scopeOf:   map[string][]string{},
		watch:     map[chan struct{}]struct{}{},
		keyWaits:  map[string]chan keyAck{},
		metrics:   newCatalogMetrics(opts.Registry),
		sends:     make(chan sendJob, 4096),
		pubReq:    make(chan struct{}, 1),
		ctx:       ctx,
		cancel:    cancel,
	}
	if opts.Signing != nil {
		var err error
		if c.signer, err = newSigner(opts.Signing, self); err != nil {
			cancel()
			return nil, err
		}
		c.verifier = newVerifier(opts.Signing)
		c.trustGen = c.verifier.gen()
	}
	c.lastVer = uint64(c.now().UnixNano())
	own := &nodeData{verified: true,
		nodeHeader: nodeHeader{Node: name, Cluster: self.Cluster, Region: self.Region, Zone: self.Zone, Cloud: self.Cloud,
			Gateway: self.DataAddr, Control: self.ControlAddr, Version: c.lastVer},
		public: map[string]*record{}, scoped: map[string]*record{}, state: "alive", stateAt: c.now(),
	}
	c.nodes[name] = own
	c.applyOwn(services)
	if err := c.signOwnLocked(); err != nil {
		cancel()
		return nil, err
	}

	mc, err := cfg.memberlistConfig()
	if err != nil {
		cancel()
		return nil, err
	}
	tr, err := newTransport(host, port, c.log)
	if err != nil {
		cancel()
		return nil, err
	}
	mc.Transport = opts.wrapTransport(tr)
	mc.Name = name
	mc.BindAddr = host
	mc.BindPort = tr.port()
	mc.AdvertisePort = tr.port()
	if cfg.Advertise != "" {
		mc.AdvertiseAddr, mc.AdvertisePort, _ = configfile.HostPort(cfg.Advertise)
	}
	if !cfg.Insecure {
		keys, err := cfg.keys()
		if err != nil {
			cancel()
			return nil, err
		}
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			cancel()
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
		c.keyring = kr
	}
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Logger = log.New(&slogWriter{log: c.log, closing: &c.closing}, "", 0)
	c.packetSize = mc.UDPBufferSize - 100
	c.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if ml := c.mlReady.Load(); ml != nil {
				return ml.NumMembers()
			}
			return 1
		},
		RetransmitMult: mc.RetransmitMult,
	}
	c.publishNow()
	ml, err := memberlist.Create(mc)
	if err != nil {
		cancel()
		tr.Shutdown()
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	c.ml = ml
	c.mlReady.Store(ml)
	c.log.Info("gossip started", "addr", c.GossipAddr(), "cluster", self.Cluster, "region", self.Region,
		"profile", cfg.Profile, "encrypted", !cfg.Insecure)

	workers := 4
	for range workers {
		c.bg.Add(1)
		go c.sendLoop()
	}
	c.bg.Add(4)
	go c.publishLoop()
	go c.joinLoop(cfg.Join)
	go c.gcLoop()
	go c.scopedAntiEntropy(mc.PushPullInterval)
	return c, nil
}

// Name returns this gateway's node name.
func (c *Catalog) Name() string { return c.name }

// GossipAddr returns the address other gateways join at.
func (c *Catalog) GossipAddr() string {
	n := c.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

func (c *Catalog) joinLoop(peers []string) {
	defer c.bg.Done()
	if len(peers) == 0 {
		return
	}
	b := retry.New(200*time.Millisecond, 10*time.Second)
	for {
		n, err := c.ml.Join(peers)
		if n > 0 {
			c.log.Info("joined federation", "contacted", n)
			return
		}
		wait := b.Next()
		c.log.Warn("join failed, retrying", "peers", peers, "err", err, "in", wait)
		if !retry.Sleep(c.ctx.Done(), wait) {
			return
		}
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
// federation at once: changed services go to every member directly and
// through gossip; services the scope restricts go only to members in
// their allowed regions.
func (c *Catalog) SetServices(services []Service) {
	c.mu.Lock()
	pub, scoped := c.applyOwn(services)
	c.mu.Unlock()
	c.publishNow()
	c.disseminate(pub, scoped)
}

// SetScope installs a new residency scope and re-issues every own service
// whose audience changes.
func (c *Catalog) SetScope(s Scope) {
	c.mu.Lock()
	c.scope = s
	own := c.nodes[c.name]
	current := make([]Service, 0, len(own.public))
	for k, r := range own.public {
		if sr, ok := own.scoped[k]; ok && !sr.Deleted {
			current = append(current, sr.Service)
		} else if !r.Deleted {
			current = append(current, r.Service)
		}
	}
	pub, scoped := c.applyOwn(current)
	c.mu.Unlock()
	c.publishNow()
	c.disseminate(pub, scoped)
}

// applyOwn computes new own records for services; c.mu is held (or the
// catalog is not yet shared). It returns the changed public and scoped
// records.
func (c *Catalog) applyOwn(services []Service) (pub, scoped []*record) {
	own := c.nodes[c.name]
	now := c.now()
	next := func() uint64 {
		c.lastVer = max(uint64(now.UnixNano()), satAdd(c.lastVer, 1))
		return c.lastVer
	}
	want := make(map[string]Service, len(services))
	for _, s := range cloneServices(services) {
		want[s.Key()] = s
	}
	for key, s := range want {
		var regions []string
		restricted := false
		if c.scope != nil {
			regions, restricted = c.scope.CatalogRegions(s.Namespace, s.Name, s.Labels)
		}
		oldPub, oldScoped := own.public[key], own.scoped[key]
		wasRestricted := oldScoped != nil && !oldScoped.Deleted
		var cur *record
		if wasRestricted {
			cur = oldScoped
		} else if oldPub != nil && !oldPub.Deleted {
			cur = oldPub
		}
		if cur != nil && restricted == wasRestricted && serviceEqual(cur.Service, s) &&
			(!restricted || slices.Equal(c.scopeOf[key], regions)) {
			continue
		}
		v := next()
		if restricted {
			sr := &record{Service: s, Version: v, Scoped: true, Changed: now.UnixNano()}
			c.signScopedLocked(sr)
			own.scoped[key] = sr
			scoped = append(scoped, sr)
			c.scopeOf[key] = regions
			// Everyone else learns only that there is nothing to see.
			tomb := &record{Service: Service{Namespace: s.Namespace, Name: s.Name}, Version: v, Deleted: true, Changed: now.UnixNano(), deletedAt: now}
			own.public[key] = tomb
			pub = append(pub, tomb)
		} else {
			r := &record{Service: s, Version: v, Changed: now.UnixNano()}
			own.public[key] = r
			pub = append(pub, r)
			if wasRestricted {
				tomb := &record{Service: Service{Namespace: s.Namespace, Name: s.Name}, Version: v, Deleted: true, Scoped: true, Changed: now.UnixNano(), deletedAt: now}
				c.signScopedLocked(tomb)
				own.scoped[key] = tomb
				scoped = append(scoped, tomb)
			}
			delete(c.scopeOf, key)
		}
	}
	for key, r := range own.public {
		if _, ok := want[key]; ok || r.Deleted {
			continue
		}
		v := next()
		tomb := &record{Service: Service{Namespace: r.Namespace, Name: r.Name}, Version: v, Deleted: true, Changed: now.UnixNano(), deletedAt: now}
		own.public[key] = tomb
		pub = append(pub, tomb)
		if sr, ok := own.scoped[key]; ok && !sr.Deleted {
			st := &record{Service: tomb.Service, Version: v, Deleted: true, Scoped: true, Changed: now.UnixNano(), deletedAt: now}
			c.signScopedLocked(st)
			own.scoped[key] = st
			scoped = append(scoped, st)
		}
		delete(c.scopeOf, key)
	}
	if len(pub)+len(scoped) > 0 {
		own.Version = c.lastVer
		if err := c.signOwnLocked(); err != nil {
			c.log.Error("sign own catalog entry", "err", err)
		}
		own.view = nil
		c.stateGen++
	}
	return pub, scoped
}

// signOwnLocked re-signs our header over the current public set with
// the current certificate; c.mu is held (or the catalog is not yet
// shared). When the certificate changed since our last signature, our
// scoped records are signed again with it too: a receiver checks them
// against the chain of the header they travel with.
func (c *Catalog) signOwnLocked() error {
	own := c.nodes[c.name]
	if c.signer == nil {
		return (*signingKey)(nil).signEntry(&own.nodeHeader, own.public)
	}
	k, err := c.signer.key()
	if err != nil {
		own.Digest = entryDigest(own.public)
		return err
	}
	if k != c.ownKey {
		c.ownKey = k
		for key, r := range own.scoped {
			cp := *r // a record may be in a message being encoded: copy, never write
			c.signScopedLocked(&cp)
			own.scoped[key] = &cp
		}
	}
	return k.signEntry(&own.nodeHeader, own.public)
}

// signScopedLocked signs r with the certificate our header is signed
// with; c.mu is held.
func (c *Catalog) signScopedLocked(r *record) {
	if err := c.ownKey.signScoped(c.name, r); err != nil {
		c.log.Error("sign own scoped record", "service", r.Key(), "err", err)
	}
}

// Resign signs this gateway's entry and scoped records again with the
// current certificate, under a new version, and sends the entry with its
// new chain to every member. The gateway calls it when its certificate
// is renewed (identity.Bundle.OnCertificate), long before the old one
// expires: peers replace the entry only once the new one verifies, so
// the gateway's services stay visible throughout, and later changes are
// signed by a certificate they know. It does nothing when the
// certificate is the one already signed with, or the catalog is closed
// or unsigned.
func (c *Catalog) Resign() error {
	if c.signer == nil || c.ctx.Err() != nil {
		return nil
	}
	c.mu.Lock()
	k, err := c.signer.key()
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("re-sign catalog entry of %s: %w", c.name, err)
	}
	if k == c.ownKey {
		c.mu.Unlock()
		return nil
	}
	own := c.nodes[c.name]
	c.lastVer = max(uint64(c.now().UnixNano()), satAdd(c.lastVer, 1))
	own.Version = c.lastVer
	if err := c.signOwnLocked(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("re-sign catalog entry of %s: %w", c.name, err)
	}
	own.view = nil
	c.stateGen++
	// A delta of no records whose header carries the new chain: the
	// receivers' copies keep their digest, and they need not ask for the
	// whole entry to learn the certificate.
	hdr := own.nodeHeader
	hdr.Full = false
	c.mu.Unlock()
	c.log.Info("catalog entry signed with a renewed certificate", "cluster", c.self.Cluster, "region", c.self.Region,
		"version", hdr.Version)
	c.publish()
	ml := c.mlReady.Load()
	if ml == nil {
		return nil
	}
	msg := encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{{nodeHeader: hdr}}})
	c.metrics.deltas.Inc()
	if len(msg) <= c.packetSize {
		c.queue.QueueBroadcast(deltaBroadcast{msg: msg})
	}
	for _, m := range ml.Members() {
		if m.Name != c.name {
			c.send(m, msg)
		}
	}
	return nil
}

// deltaHeader is our header as a delta carries it: no certificate (it
// travels with whole copies; a receiver without it asks for one).
func deltaHeader(h nodeHeader) nodeHeader {
	h.Cert, h.Full = nil, false
	return h
}

func serviceEqual(a, b Service) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && a.Healthy == b.Healthy && a.Total == b.Total &&
		a.Weight == b.Weight && slices.Equal(a.Ports, b.Ports) && reflect.DeepEqual(labelsOrNil(a.Labels), labelsOrNil(b.Labels))
}

func labelsOrNil(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// disseminate sends changed own records: public ones to every member
// (one UDP packet when they fit, else a reliable stream) and into the
// gossip queue; scoped ones only to members in the allowed regions.
func (c *Catalog) disseminate(pub, scoped []*record) {
	ml := c.mlReady.Load()
	if ml == nil || len(pub)+len(scoped) == 0 {
		return
	}
	c.mu.Lock()
	hdr := deltaHeader(c.nodes[c.name].nodeHeader)
	scopeOf := make(map[string][]string, len(scoped))
	for _, r := range scoped {
		scopeOf[r.Key()] = c.scopeOf[r.Key()]
	}
	c.mu.Unlock()
	members := c.members()
	if len(pub) > 0 {
		msg := encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{{nodeHeader: hdr, Records: pub}}})
		c.metrics.deltas.Inc()
		if len(msg) <= c.packetSize {
			c.queue.QueueBroadcast(deltaBroadcast{msg: msg})
		}
		for _, m := range members {
			if m.Name != c.name {
				c.send(m, msg)
			}
		}
	}
	if len(scoped) == 0 {
		return
	}
	for _, m := range members {
		if m.Name == c.name {
			continue
		}
		region := metaRegion(m)
		var recs []*record
		for _, r := range scoped {
			if r.Deleted || slices.Contains(scopeOf[r.Key()], region) {
				recs = append(recs, r)
			}
		}
		if len(recs) > 0 {
			c.send(m, encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{{nodeHeader: hdr, Records: recs}}}))
		}
	}
}

// send delivers msg to one member: a UDP packet when it fits, otherwise
// a TCP stream from the send workers.
func (c *Catalog) send(to *memberlist.Node, msg []byte) {
	ml := c.mlReady.Load()
	if ml == nil {
		return
	}
	if len(msg) <= c.packetSize {
		if err := ml.SendBestEffort(to, msg); err == nil {
			c.metrics.bytesSent.Add(float64(len(msg)))
			c.metrics.deltaBytes.Add(float64(len(msg)))
			return
		}
	}
	select {
	case c.sends <- sendJob{to: to, msg: msg}:
	case <-c.ctx.Done():
	default:
		c.metrics.sendDrops.Inc()
	}
}

func (c *Catalog) sendLoop() {
	defer c.bg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case j := <-c.sends:
			if ml := c.mlReady.Load(); ml != nil {
				if err := ml.SendReliable(j.to, j.msg); err != nil {
					c.log.Debug("direct catalog send failed", "peer", j.to.Name, "err", err)
					continue
				}
				c.metrics.bytesSent.Add(float64(len(j.msg)))
				c.metrics.deltaBytes.Add(float64(len(j.msg)))
			}
		}
	}
}

// sendOwnTo hands a member our whole entry directly: the public part, and
// the scoped services its region may see.
func (c *Catalog) sendOwnTo(n *memberlist.Node) {
	c.mu.Lock()
	own := c.nodes[c.name]
	hdr := own.nodeHeader
	hdr.Full = true
	pub := make([]*record, 0, len(own.public))
	for _, r := range own.public {
		pub = append(pub, r)
	}
	region := metaRegion(n)
	var scoped []*record
	for k, r := range own.scoped {
		if r.Deleted || slices.Contains(c.scopeOf[k], region) {
			scoped = append(scoped, r)
		}
	}
	c.mu.Unlock()
	c.send(n, encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{{nodeHeader: hdr, Records: append(pub, scoped...)}}}))
}

// scopedAntiEntropy periodically re-sends scoped services to the members
// allowed to see them: they are never part of push/pull, so this is what
// repairs a lost direct send.
func (c *Catalog) scopedAntiEntropy(every time.Duration) {
	defer c.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		n := len(c.nodes[c.name].scoped)
		c.mu.Unlock()
		if n == 0 {
			continue
		}
		for _, m := range c.members() {
			if m.Name != c.name {
				c.sendOwnTo(m)
			}
		}
	}
}

func metaRegion(n *memberlist.Node) string {
	var m nodeMeta
	if json.Unmarshal(n.Meta, &m) != nil {
		return ""
	}
	return m.Region
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

// Shutdown announces a graceful leave (so others can tell "left" from
// "dead"), leaves the pool and stops gossip.
func (c *Catalog) Shutdown(ctx context.Context) error {
	var err error
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		timeout := time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		c.announceLeaving()
		if lerr := c.ml.Leave(timeout); lerr != nil {
			c.log.Warn("leave gossip pool", "err", lerr)
		}
		c.cancel()
		err = c.ml.Shutdown()
		c.bg.Wait()
		c.metrics.unregister()
	})
	return err
}

// announceLeaving tells every member directly that this gateway is going
// away on purpose, before memberlist's leave message.
func (c *Catalog) announceLeaving() {
	c.mu.Lock()
	c.lastVer = satAdd(c.lastVer, 1)
	own := c.nodes[c.name]
	own.Version, own.Leaving = c.lastVer, true
	if err := c.signOwnLocked(); err != nil {
		c.log.Error("sign own catalog entry", "err", err)
	}
	hdr := deltaHeader(own.nodeHeader)
	c.stateGen++
	c.mu.Unlock()
	msg := encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{{nodeHeader: hdr}}})
	for _, m := range c.members() {
		if m.Name != c.name {
			_ = c.ml.SendBestEffort(m, msg)
		}
	}
}

// merge applies what peers sent. A node's public part is taken whole: a
// newer signed header whose digest matches the records (the whole set,
// or our copy with a delta applied) replaces it; anything else is
// refused (sign.go). Scoped records are taken one by one, newer wins,
// each checked by its own signature.
func (c *Catalog) merge(nodes []*wireNode, direct bool) {
	now := c.now()
	changed := false
	var reissue, reissueScoped []*record
	var wants []string
	var rejects []rejection
	c.mu.Lock()
	for _, wn := range nodes {
		if wn.Node == c.name {
			if reason := c.checkEchoLocked(wn, now); reason != "" {
				rejects = append(rejects, rejection{wn: wn, reason: reason})
				continue
			}
			p, sc := c.echoLocked(wn, now)
			reissue, reissueScoped = append(reissue, p...), append(reissueScoped, sc...)
			continue
		}
		ch, want, reason := c.mergeNodeLocked(wn, direct, now)
		changed = changed || ch
		if want {
			wants = append(wants, wn.Node)
		}
		if reason != "" {
			rejects = append(rejects, rejection{wn: wn, reason: reason})
		}
	}
	if changed {
		c.stateGen++
	}
	c.mu.Unlock()
	for _, r := range rejects {
		c.reject(r.wn, r.reason)
	}
	if changed || len(reissue) > 0 {
		c.publish()
	}
	if len(reissue) > 0 {
		c.disseminate(reissue, reissueScoped)
	}
	for _, n := range wants {
		c.askWhole(n)
	}
}

type rejection struct {
	wn     *wireNode
	reason string
}

// mergeNodeLocked merges another gateway's entry; c.mu is held. want
// says our copy is behind in a way only the owner's whole entry repairs.
func (c *Catalog) mergeNodeLocked(wn *wireNode, direct bool, now time.Time) (changed, want bool, reason string) {
	var pub, scoped []*record
	for _, r := range wn.Records {
		if !r.Scoped {
			pub = append(pub, r)
		} else if direct {
			scoped = append(scoped, r) // scoped records travel only directly from their owner
		}
	}
	nd := c.nodes[wn.Node]
	known := nd != nil && nd.verified
	fg, collected := c.forgotten[wn.Node]
	switch {
	case known && wn.Version <= nd.Version:
		// Old or already applied.
	case !known && collected && wn.Version <= fg.version:
		// A collected gateway's old state: do not resurrect it.
	default:
		bound := fg.cluster
		if known {
			bound = nd.Cluster
		}
		if bound != "" && bound != wn.Cluster {
			return false, false, rejectNodeCluster
		}
		var set map[string]*record
		if wn.Full {
			set = make(map[string]*record, len(pub))
		} else if known {
			set = maps.Clone(nd.public)
		} else {
			return false, true, "" // a delta and nothing to apply it to
		}
		for _, r := range pub {
			set[r.Key()] = r
		}
		if entryDigest(set) != wn.Digest {
			if wn.Full {
				return false, false, rejectInconsistent
			}
			return false, true, "" // we missed a change
		}
		if reason := c.verifier.verifyEntry(&wn.nodeHeader, now); reason != "" {
			return false, reason == rejectUnknownCert, reason
		}
		if nd == nil {
			nd = &nodeData{public: map[string]*record{}, scoped: map[string]*record{}, state: "unknown", stateAt: now}
			c.nodes[wn.Node] = nd
			c.orderStale = true
		}
		for k, r := range set {
			old := nd.public[k]
			switch {
			case old != nil && old.Version == r.Version && old.Deleted == r.Deleted:
				set[k] = old // unchanged: keep its tombstone time and cached hash
				continue
			case r.Deleted:
				r.deletedAt = now
			}
			if r.Changed > 0 {
				if d := now.Sub(time.Unix(0, r.Changed)); d >= 0 && d < time.Hour {
					c.metrics.propagation.Observe(d.Seconds())
				}
			}
		}
		hdr := wn.nodeHeader
		hdr.Full = false
		nd.nodeHeader, nd.public, nd.verified, nd.view = hdr, set, true, nil
		nd.maxVer = max(nd.maxVer, wn.Version)
		delete(c.forgotten, wn.Node)
		if nd.Leaving && nd.state == "dead" {
			// Its announcement came after the failure detector's
			// verdict: it left on purpose.
			nd.state = "left"
		}
		changed, known = true, true
	}
	if len(scoped) == 0 {
		return changed, false, ""
	}
	if !known {
		return changed, true, ""
	}
	if wn.Cluster != nd.Cluster || wn.Region != nd.Region {
		return changed, false, rejectNodeCluster
	}
	for _, r := range scoped {
		if old, ok := nd.scoped[r.Key()]; ok && old.Version >= r.Version {
			continue
		}
		if reason := c.verifier.verifyScoped(&wn.nodeHeader, r, now); reason != "" {
			return changed, reason == rejectUnknownCert, reason
		}
		if r.Deleted {
			r.deletedAt = now
		}
		nd.scoped[r.Key()] = r
		nd.maxVer = max(nd.maxVer, r.Version)
		nd.view, changed = nil, true
	}
	return changed, false, ""
}

// checkEchoLocked decides whether our own entry coming back is to be
// acted on: only whole copies that carry something newer than ours, and
// only when signed with a certificate of our own cluster.
func (c *Catalog) checkEchoLocked(wn *wireNode, now time.Time) string {
	own := c.nodes[c.name]
	newer := wn.Version > own.Version
	for _, r := range wn.Records {
		cur := own.public[r.Key()]
		if !r.Scoped && (cur == nil && r.Version > c.ownCollected || cur != nil && cur.Version < r.Version) {
			newer = true
		}
	}
	if !newer || !wn.Full {
		wn.Records, wn.Version = nil, 0 // nothing to do (deltas of ours come only from us)
		return ""
	}
	if wn.Cluster != own.Cluster {
		return rejectNodeCluster
	}
	set := make(map[string]*record, len(wn.Records))
	for _, r := range wn.Records {
		if !r.Scoped {
			set[r.Key()] = r
		}
	}
	if entryDigest(set) != wn.Digest {
		return rejectInconsistent
	}
	return c.verifier.verifyEntry(&wn.nodeHeader, now)
}

// echoLocked handles our own entry coming back, possibly from before a
// restart: any record of ours that others hold at a version newer than
// ours is re-issued with a newer version still, so our current state wins
// everywhere. Our current records echoed back unchanged are ignored.
// Versions saturate at MaxUint64 and never wrap.
func (c *Catalog) echoLocked(wn *wireNode, now time.Time) (pub, scoped []*record) {
	own := c.nodes[c.name]
	bumped := false
	if wn.Version > own.Version {
		c.lastVer = satAdd(max(c.lastVer, wn.Version), 1)
		own.Version = c.lastVer
		bumped = true
	}
	for _, r := range wn.Records {
		if r.Scoped {
			continue
		}
		cur := own.public[r.Key()]
		if cur != nil && cur.Version >= r.Version || cur == nil && r.Version <= c.ownCollected {
			continue
		}
		c.lastVer = satAdd(max(c.lastVer, r.Version), 1)
		var nr *record
		if cur != nil {
			cp := *cur
			cp.hashed = false
			nr = &cp
		} else {
			nr = &record{Service: Service{Namespace: r.Namespace, Name: r.Name}, Deleted: true, deletedAt: now}
		}
		nr.Version, nr.Changed = c.lastVer, now.UnixNano()
		own.public[r.Key()] = nr
		pub = append(pub, nr)
		// A restricted service is a public tombstone and a scoped record
		// of one version: keep them paired.
		if sr, ok := own.scoped[r.Key()]; ok {
			cp := *sr
			cp.Version, cp.Changed, cp.hashed = nr.Version, nr.Changed, false
			c.signScopedLocked(&cp)
			own.scoped[r.Key()] = &cp
			scoped = append(scoped, &cp)
		}
	}
	if bumped || len(pub) > 0 {
		own.Version = c.lastVer
		if err := c.signOwnLocked(); err != nil {
			c.log.Error("sign own catalog entry", "err", err)
		}
		own.view = nil
		c.stateGen++
	}
	return pub, scoped
}

// reject counts a refused entry and logs it, at most once per reason
// every 10 seconds.
func (c *Catalog) reject(wn *wireNode, reason string) {
	c.metrics.rejected.WithLabelValues(reason).Inc()
	now := c.now()
	c.mu.Lock()
	last, ok := c.rejectLog[reason]
	if ok && now.Sub(last) < 10*time.Second {
		c.mu.Unlock()
		return
	}
	c.rejectLog[reason] = now
	c.mu.Unlock()
	c.log.Warn("refused catalog entry", "reason", reason, "peer", wn.Node, "cluster", wn.Cluster, "region", wn.Region, "version", wn.Version)
}

// askWhole asks a gateway for its whole entry, at most once a second.
func (c *Catalog) askWhole(node string) {
	if m := c.memberOnce(c.wantAt, node); m != nil {
		_ = c.mlReady.Load().SendBestEffort(m, encodeMessage(&message{Kind: kindWant, Want: c.name}))
	}
}

// handleWant answers a request for our whole entry, at most once a
// second per asker.
func (c *Catalog) handleWant(from string) {
	if from == c.name {
		return
	}
	if m := c.memberOnce(c.answerAt, from); m != nil {
		c.sendOwnTo(m)
	}
}

// memberOnce returns the member named node, unless memberlist is not up,
// no member has that name, or last[node] says the same was done less
// than a second ago (it records now otherwise).
func (c *Catalog) memberOnce(last map[string]time.Time, node string) *memberlist.Node {
	ml := c.mlReady.Load()
	if ml == nil {
		return nil
	}
	now := c.now()
	c.mu.Lock()
	if t, ok := last[node]; ok && now.Sub(t) < time.Second && !now.Before(t) {
		c.mu.Unlock()
		return nil
	}
	last[node] = now
	c.mu.Unlock()
	for _, m := range c.members() {
		if m.Name == node {
			return m
		}
	}
	return nil
}

func (c *Catalog) setState(node *memberlist.Node, state string) {
	c.mu.Lock()
	nd, ok := c.nodes[node.Name]
	if !ok {
		if state != "alive" {
			c.mu.Unlock()
			return
		}
		// Known from memberlist before its signed entry arrives. Its
		// metadata is not signed, so it is not shown until the entry is
		// verified; ask for it.
		nd = &nodeData{nodeHeader: nodeHeader{Node: node.Name}, public: map[string]*record{}, scoped: map[string]*record{}}
		c.nodes[node.Name] = nd
		c.orderStale = true
	}
	if state == "alive" && nd.Leaving && nd.state != "alive" {
		// Back after a graceful leave: its next entry will clear Leaving.
		nd.Leaving = false
	}
	nd.state, nd.stateAt, nd.view = state, c.now(), nil
	c.mu.Unlock()
	c.publish()
}

// publish asks the publisher to rebuild the snapshot. Requests made while
// it is busy collapse into one, so a burst of gossip costs one rebuild.
func (c *Catalog) publish() {
	select {
	case c.pubReq <- struct{}{}:
	default:
	}
}

func (c *Catalog) publishLoop() {
	defer c.bg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.pubReq:
			c.publishNow()
		}
	}
}

// publishNow rebuilds stale views and the snapshot, then wakes watchers.
func (c *Catalog) publishNow() {
	c.mu.Lock()
	if c.orderStale || len(c.order) != len(c.nodes) {
		c.orderStale = false
		c.order = c.order[:0]
		for _, nd := range c.nodes {
			c.order = append(c.order, nd)
		}
		sort.Slice(c.order, func(i, j int) bool {
			a, b := c.order[i], c.order[j]
			return a.Cluster < b.Cluster || a.Cluster == b.Cluster && a.Node < b.Node
		})
	}
	views := make([]*ClusterView, 0, len(c.order))
	var byState [4]int
	services := 0
	for _, nd := range c.order {
		byState[stateIndex(nd.state)]++
		if !nd.verified {
			continue
		}
		if nd.view == nil {
			nd.view = nd.buildView()
		}
		views = append(views, nd.view)
		services += len(nd.view.Services)
	}
	c.snap.Store(&Snapshot{Local: c.name, Clusters: views})
	for ch := range c.watch {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	c.metrics.entries.Set(float64(services))
	for i, st := range states {
		c.metrics.members.WithLabelValues(st).Set(float64(byState[i]))
	}
}

var states = [4]string{"alive", "dead", "left", "unknown"}

func stateIndex(s string) int {
	for i, st := range states {
		if st == s {
			return i
		}
	}
	return 3
}

// buildView merges public and scoped records: per service the newest
// version wins, and on a tie the live record beats the tombstone (a
// restricted service has a public tombstone and a scoped record of one
// version; a service whose restriction was lifted, the reverse).
func (nd *nodeData) buildView() *ClusterView {
	v := &ClusterView{Entry: Entry{Node: nd.Node, Cluster: nd.Cluster, Region: nd.Region, Zone: nd.Zone, Cloud: nd.Cloud,
		Gateway: nd.Gateway, Control: nd.Control, Version: nd.Version, Leaving: nd.Leaving}, State: nd.state, Reachable: nd.state == "alive"}
	svcs := make([]Service, 0, len(nd.public)+len(nd.scoped))
	for k, r := range nd.public {
		best := r
		if s, ok := nd.scoped[k]; ok && (s.Version > r.Version || s.Version == r.Version && !s.Deleted) {
			best = s
		}
		v.Version = max(v.Version, best.Version)
		if !best.Deleted {
			svcs = append(svcs, best.Service)
		}
	}
	for k, s := range nd.scoped {
		if _, ok := nd.public[k]; !ok && !s.Deleted {
			v.Version = max(v.Version, s.Version)
			svcs = append(svcs, s.Service)
		}
	}
	SortServices(svcs)
	v.Services = svcs
	return v
}

// gcLoop collects tombstones and departed gateways after the grace period.
func (c *Catalog) gcLoop() {
	defer c.bg.Done()
	every := max(c.cfg.TombstoneTTL/10, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	// The trust generation is one comparison a second; the held
	// entries are checked only when it moved.
	trust := time.NewTicker(trustCheckEvery)
	defer trust.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-trust.C:
			c.recheckTrust()
		case <-t.C:
			changed, own := c.collect()
			if changed {
				c.publish()
			}
			if own {
				c.sendOwnToAll()
			}
		}
	}
}

// collect removes tombstones and dead or departed gateways older than the
// grace period, and gateways heard of only through others (state
// unknown) after UnknownTTL. Collected gateways are remembered by version
// and cluster so that old copies of their state arriving later are not
// resurrected and their name stays bound. Another gateway's public
// tombstones are its owner's to collect (they are in its signed digest);
// when we collect ours, the new entry goes to every member whole. It
// reports whether anything changed and whether our own entry did.
func (c *Catalog) collect() (changed, ownChanged bool) {
	now := c.now()
	cutoff := now.Add(-c.cfg.TombstoneTTL)
	unknownTTL := c.cfg.UnknownTTL
	if unknownTTL <= 0 {
		unknownTTL = DefaultConfig().UnknownTTL
	}
	unknownCutoff := now.Add(-unknownTTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, nd := range c.nodes {
		if name == c.name {
			continue
		}
		gone := (nd.state == "dead" || nd.state == "left") && nd.stateAt.Before(cutoff)
		unknown := nd.state == "unknown" && nd.stateAt.Before(unknownCutoff)
		if gone || unknown {
			fg := c.forgotten[name]
			fg.version = max(fg.version, nd.maxVer)
			if nd.verified {
				fg.cluster = nd.Cluster
			}
			c.forgotten[name] = fg
			delete(c.nodes, name)
			c.orderStale = true
			changed = true
			continue
		}
		for k, r := range nd.scoped {
			if r.Deleted && r.deletedAt.Before(cutoff) {
				delete(nd.scoped, k)
				nd.view, changed = nil, true
			}
		}
	}
	own := c.nodes[c.name]
	for _, m := range []map[string]*record{own.public, own.scoped} {
		for k, r := range m {
			if r.Deleted && r.deletedAt.Before(cutoff) {
				c.ownCollected = max(c.ownCollected, r.Version)
				delete(m, k)
				ownChanged = true
			}
		}
	}
	if ownChanged {
		c.lastVer = satAdd(c.lastVer, 1)
		own.Version = c.lastVer
		if err := c.signOwnLocked(); err != nil {
			c.log.Error("sign own catalog entry", "err", err)
		}
		own.view = nil
	}
	for _, m := range []map[string]time.Time{c.wantAt, c.answerAt} {
		for k, t := range m {
			if now.Sub(t) > time.Minute {
				delete(m, k)
			}
		}
	}
	if changed || ownChanged {
		c.stateGen++
		c.metrics.collected.Inc()
	}
	return changed || ownChanged, ownChanged
}

// trustCheckEvery is how often the trust generation is compared with the
// one the held entries were checked under.
const trustCheckEvery = time.Second

// recheckTrust verifies the chains of the entries held again when the
// trust changed since they were last checked, and hides the entries of
// gateways whose certificates the new trust refuses (verifier.recheck:
// not for mere expiry). The chains are verified without the lock; an
// entry replaced meanwhile is left to its own verification.
func (c *Catalog) recheckTrust() {
	v := c.verifier
	if v == nil || v.generation == nil {
		return
	}
	gen := v.gen()
	type held struct {
		node    string
		version uint64
		fp      string
		chain   []byte
	}
	var entries []held
	c.mu.Lock()
	if gen == c.trustGen {
		c.mu.Unlock()
		return
	}
	for name, nd := range c.nodes {
		if name != c.name && nd.verified && len(nd.Cert) > 0 {
			entries = append(entries, held{node: name, version: nd.Version, fp: string(nd.CertFP), chain: nd.Cert})
		}
	}
	c.mu.Unlock()
	now := c.now()
	refused := map[string]string{}
	for _, e := range entries {
		if reason := v.recheck(e.chain, now); reason != "" {
			refused[e.node] = reason
		}
	}
	var hidden []rejection
	c.mu.Lock()
	c.trustGen = gen
	for _, e := range entries {
		reason, ok := refused[e.node]
		nd := c.nodes[e.node]
		if !ok || nd == nil || !nd.verified || nd.Version != e.version || string(nd.CertFP) != e.fp {
			continue
		}
		nd.verified, nd.view = false, nil
		hidden = append(hidden, rejection{wn: &wireNode{nodeHeader: nd.nodeHeader}, reason: reason})
	}
	if len(hidden) > 0 {
		c.stateGen++
	}
	c.mu.Unlock()
	c.log.Info("trust changed: catalog entries checked again", "entries", len(entries), "hidden", len(hidden))
	for _, r := range hidden {
		c.reject(r.wn, r.reason)
	}
	if len(hidden) > 0 {
		c.publish()
	}
}

// sendOwnToAll hands every member our whole entry.
func (c *Catalog) sendOwnToAll() {
	ml := c.mlReady.Load()
	if ml == nil {
		return
	}
	for _, m := range c.members() {
		if m.Name != c.name {
			c.sendOwnTo(m)
		}
	}
}

func cloneServices(in []Service) []Service {
	out := make([]Service, len(in))
	for i, s := range in {
		s.Ports = append([]Port(nil), s.Ports...)
		if len(s.Labels) > 0 {
			l := make(map[string]string, len(s.Labels))
			for k, v := range s.Labels {
				l[k] = v
			}
			s.Labels = l
		} else {
			s.Labels = nil
		}
		out[i] = s
	}
	return out
}

type deltaBroadcast struct{ msg []byte }

func (b deltaBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b deltaBroadcast) Message() []byte                       { return b.msg }
func (b deltaBroadcast) Finished()                             {}
