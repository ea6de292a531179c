package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway/clusterset"
	"github.com/straitmesh/strait/gateway/fault"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/connlimit"
	"github.com/straitmesh/strait/internal/retry"
)

// Options carries a gateway's dependencies. Every field is optional.
type Options struct {
	// Logger receives the gateway's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the gateway's metrics and is served on /metrics.
	// Default: a fresh registry with Go and process collectors.
	Registry *prometheus.Registry
	// Identity is the gateway's mTLS identity. Default: loaded from cfg.TLS.
	Identity *identity.Bundle
	// Discovery lists local services. Default: the source cfg.Discovery
	// chooses (discovery.go), started and stopped with the gateway; a
	// source given here is the caller's to start and stop.
	Discovery discovery.Source
	// DialGateway opens a TCP connection to another gateway's data-plane
	// address. The lab routes it through emulated links. Default: net.Dialer.
	DialGateway func(ctx context.Context, addr string) (net.Conn, error)
	// Version is reported on /v1/status.
	Version string
	// Policy supplies the residency policy. Default: the file named by
	// cfg.Residency.Policy, or no policy (every flow allowed).
	Policy PolicySource
	// StateValidator checks routing-state payloads (residency policies)
	// before they reach the log. Optional.
	StateValidator state.Validator
	// StateTransport overrides the mTLS Raft transport (tests). Optional.
	StateTransport raft.Transport
	// TracerProvider receives the gateway's spans (docs/tracing.md).
	// Default nil: tracing off, at no cost on the data path.
	TracerProvider trace.TracerProvider
}

// Gateway is one running strait gateway.
type Gateway struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry
	id  *identity.Bundle
	// manageCerts: the identity was made from the config, so a
	// certificate manager keeps it current (certs.go).
	manageCerts bool
	certs       *identity.Manager
	// The trust peers are verified by (trust.go): baseTrust is what the
	// gateway started with and tls.ca as last read; the routing state's
	// records are composed over it once trustFromState.
	trustMu        sync.Mutex
	baseTrust      *identity.Trust
	trustGen       int
	trustFromState bool
	trustSeen      string
	disc           discovery.Source
	discStop       func() // stops a source the gateway started; nil otherwise
	dial           func(ctx context.Context, addr string) (net.Conn, error)
	version        string
	tracer         trace.Tracer // nil: tracing off (tracing.go)
	metrics        *metrics
	health         *healthChecker
	sel            *route.Selector
	access         route.AccessTable // the routing state's export and import records
	retries        *retryBudget
	pool           *upstreamPool // streams kept for the next HTTP request
	res            *residency
	traffic        *trafficRing // the live view's flows (live.go)
	refusalFeed    *refusalFeed // the live view's refusals (live.go)
	catalog        *catalog.Catalog
	state          *state.Store
	control        *state.ControlServer
	started        time.Time
	opts           Options

	local   atomic.Pointer[localTable]
	localMu sync.Mutex // serialises writers of local
	classes classCache // residency classes per service, for the policy, catalog and local services in force

	dataLn    net.Listener
	connectLn net.Listener
	adminLn   net.Listener
	probesLn  net.Listener // listen.probes; nil when not set
	controlLn net.Listener
	imports   []*importListener
	dns       *clusterset.Server // dns.listen; nil when not set
	admin     *http.Server
	probes    *http.Server // nil without listen.probes
	serverTLS *tls.Config
	// passthroughLn is listen.passthrough (passthrough.go); nil when disabled.
	passthroughLn net.Listener

	tunnels  *tunnel.Pool      // inbound tunnels always; outbound when tunnels.enabled
	faults   *fault.Controller // fault mode (faults.go); wraps nothing unless faults.enabled
	fstate   faultState
	flows    flowSet
	draining chan struct{} // closed when shutdown starts

	conns    connTracker
	sources  *connlimit.Sources // handshakes under way by client address (budget.go)
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutOnce sync.Once
	closing  atomic.Bool
	life     lifecycle

	// advertise and controlAdvertise are the data-plane and control
	// addresses other gateways dial (listen).
	advertise, controlAdvertise string
}

type importListener struct {
	Import
	ln net.Listener
}

// localTable is an immutable view of the local services and the health of
// their endpoints.
type localTable struct {
	byKey map[string]discovery.Service
	down  map[string]bool // endpoint dial addresses failing their health check
	// services counts the lists of local services installed (setLocal),
	// so that what is derived from byKey (classCache) knows when it changed;
	// a change of health alone keeps it.
	services uint64
}

// endpoints returns the dial addresses of svc's port, healthy ones first.
// Endpoints that failed their last check stay at the end as a last resort:
// the check may be older than the endpoint's recovery.
func (t *localTable) endpoints(svc discovery.Service, port int) ([]string, bool) {
	addrs, ok := svc.Target(port)
	if !ok || len(t.down) == 0 {
		return addrs, ok
	}
	sorted := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if !t.down[a] {
			sorted = append(sorted, a)
		}
	}
	for _, a := range addrs {
		if t.down[a] {
			sorted = append(sorted, a)
		}
	}
	return sorted, true
}

// exported is what the federation learns about the local services.
func (t *localTable) exported() []catalog.Service {
	keys := make([]string, 0, len(t.byKey))
	for k := range t.byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]catalog.Service, 0, len(keys))
	for _, k := range keys {
		s := t.byKey[k]
		fs := catalog.Service{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels, Total: len(s.Endpoints)}
		for _, p := range s.Ports {
			fs.Ports = append(fs.Ports, catalog.Port{Name: p.Name, Port: p.Port, Protocol: p.Protocol})
		}
		if len(s.Ports) > 0 {
			addrs, _ := s.Target(s.Ports[0].Port)
			for _, a := range addrs {
				if !t.down[a] {
					fs.Healthy++
				}
			}
		}
		out = append(out, fs)
	}
	return out
}

// Start validates cfg, binds every listener, joins the federation and
// starts serving. On error nothing is left running: the components that
// started are stopped in reverse order, and the error names the one that
// failed (an address in use names the address).
func Start(cfg Config, opts Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid gateway config: %w", err)
	}
	g := &Gateway{cfg: cfg, opts: opts, log: opts.Logger, reg: opts.Registry, id: opts.Identity, disc: opts.Discovery, dial: opts.DialGateway, version: opts.Version, started: time.Now()}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("cluster", cfg.Cluster, "region", cfg.Region)
	g.life.log = g.log
	g.tracer = newTracer(opts.TracerProvider)
	if g.reg == nil {
		g.reg = prometheus.NewRegistry()
		g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if g.id == nil {
		var err error
		if g.id, err = newIdentity(cfg); err != nil {
			return nil, fmt.Errorf("gateway identity: %w", err)
		}
		g.manageCerts = true
	}
	if !g.id.ID.IsGateway() {
		return nil, fmt.Errorf("tls.cert %s: identity %s is an %s's; a gateway needs a gateway or voter certificate (strait ca issue)", cfg.TLS.Cert, g.id.ID, g.id.ID.Role)
	}
	if cfg.State.Enabled() && cfg.State.Voter && g.id.ID.Role != identity.RoleVoter {
		return nil, fmt.Errorf("state.voter is set but tls.cert %s names %s, not a voter: issue a voter certificate (strait ca issue --voter)", cfg.TLS.Cert, g.id.ID)
	}
	if g.id.ID.Cluster != cfg.Cluster || g.id.ID.Region != cfg.Region || g.id.ID.TrustDomain != cfg.TrustDomain {
		return nil, fmt.Errorf("gateway identity %s does not match config (cluster %s, region %s, trust domain %s)", g.id.ID, cfg.Cluster, cfg.Region, cfg.TrustDomain)
	}
	if g.dial == nil {
		d := &net.Dialer{KeepAlive: 15 * time.Second}
		g.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	g.serverTLS = g.id.ServerConfig()
	if cfg.State.Enabled() && g.opts.StateValidator == nil {
		g.opts.StateValidator = validateStatePayload
	}
	if err := g.life.start(g.components()); err != nil {
		return nil, err
	}
	g.log.Info("gateway started", "data", g.dataLn.Addr().String(), "advertise", g.advertise,
		"admin", g.adminLn.Addr().String(), "connect", g.ConnectAddr(), "passthrough", g.PassthroughAddr(), "gossip", g.catalog.GossipAddr(), "imports", len(g.imports), "dns", g.DNSAddr())
	return g, nil
}

// components is the gateway's lifecycle, in start order; see lifecycle.
// Stopping walks it backwards: stop accepting, close the routing state,
// leave the gossip pool, drain open connections, close tunnels and the
// admin server, then the background tasks, the audit trail and the
// metrics.
func (g *Gateway) components() []component {
	cfg := g.cfg
	cs := []component{
		{name: "metrics", start: func() error {
			g.metrics = newMetrics(g.reg, g.version, cfg.Cluster)
			g.sel = route.NewSelector(cfg.Cluster, cfg.Outlier, g.metrics.selector(), route.SystemClock{}, g.log)
			g.retries = newRetryBudget(time.Now)
			return nil
		}, kill: func() { g.metrics.unregister(g.reg) }},
		// The topology page's view (live.go); the audit trail feeds it.
		{name: "live view", start: func() error {
			g.traffic = newTrafficRing(time.Now)
			g.refusalFeed = newRefusalFeed(g.metrics.uiClients, g.metrics.uiDropped)
			return nil
		}, kill: func() { g.refusalFeed.close() }},
		{name: "certificates", start: g.startCertificates, kill: g.stopCertificates},
		// Before the tunnels, which dial through it, and the listeners.
		{name: "faults", start: g.startFaults, kill: g.stopFaults},
		{name: "residency", start: func() error { return g.startResidency(g.opts.Policy) }, kill: func() { g.res.close() }},
		// Refused peer certificates are counted, logged and audited
		// (trust.go) from the first handshake on.
		{name: "refusals", start: func() error {
			g.id.OnRefused(newRefusals(g).refused)
			return nil
		}, kill: func() { g.id.OnRefused(func(*identity.RefusedError) {}) }},
		{name: "discovery", start: g.startDiscovery, kill: g.stopDiscovery},
		{name: "tasks", start: func() error {
			g.ctx, g.cancel = context.WithCancel(context.Background())
			g.conns.init(cfg.Limits.MaxConnections)
			g.draining = make(chan struct{})
			g.tunnels = tunnel.NewPool(g.ctx, tunnel.Config{PerPeer: cfg.Tunnels.PerPeer, Keepalive: cfg.Tunnels.Keepalive,
				KeepaliveTimeout: cfg.Tunnels.KeepaliveTimeout, Connect: cfg.Timeouts.Connect, Drain: cfg.Timeouts.Drain,
				StreamWindowKiB: cfg.Tunnels.StreamWindowKiB, MaxStreamWindowKiB: cfg.Tunnels.MaxStreamWindowKiB,
				PeerWindowMiB: cfg.Tunnels.PeerWindowMiB, Mismatch: g.peerMismatch,
				MaxStreamsPerPeer: cfg.Tunnels.MaxStreamsPerPeer}, g.id, g.dial, g.knownGateway, g.metrics.tunnel(), g.log, nil)
			g.metrics.peers.followTunnels(g.tunnels)
			g.setLocal(g.disc.Services())
			g.health = newHealthChecker(g)
			return nil
		}, kill: func() {
			g.cancel()
			g.wg.Wait()
			g.tunnels.Wait()
		}},
		{name: "listeners", start: g.listen, kill: g.closeListeners},
		// Made here and served with the other listeners (serve), once
		// every component it reports on is up.
		{name: "admin server", start: g.newAdmin, drain: func(ctx context.Context) error {
			for _, srv := range []*http.Server{g.admin, g.probes} {
				if srv != nil && srv.Shutdown(ctx) != nil {
					srv.Close()
				}
			}
			return nil
		}, kill: func() {
			for _, srv := range []*http.Server{g.admin, g.probes} {
				if srv != nil {
					srv.Close()
				}
			}
		}},
		{name: "tunnels", kill: func() { g.tunnels.Close() }},
		{name: "connections", drain: g.drainConns, kill: g.conns.kill},
		{name: "kept streams", start: func() error { g.pool = newUpstreamPool(); return nil }, kill: func() { g.pool.close() }},
		{name: "catalog", start: func() (err error) {
			g.catalog, err = catalog.New(cfg.Gossip, catalog.Self{
				Cluster: cfg.Cluster, Region: cfg.Region, Zone: cfg.Zone, Cloud: cfg.Cloud, DataAddr: g.advertise, ControlAddr: g.controlAdvertise,
			}, g.catalogServices(g.local.Load()), catalog.Options{Logger: g.log, Registry: g.reg, Scope: g.CatalogScope(),
				// Our entry is signed by our current certificate key; others'
				// are accepted only when signed by theirs and our current
				// trust accepts their chains.
				Signing: catalog.BundleSigning(g.id), WrapTransport: g.gossipTransport})
			if err != nil {
				return err
			}
			g.metrics.peers.follow(g.catalog)
			// A renewed certificate re-signs our entry at once, long before
			// the old one expires. A catalog that was shut down ignores it.
			c := g.catalog
			g.id.OnCertificate(func(*tls.Certificate) {
				if err := c.Resign(); err != nil {
					g.log.Error("re-sign catalog entry with the renewed certificate", "err", err)
				}
			})
			return nil
		}, drain: func(ctx context.Context) error { return g.catalog.Shutdown(ctx) }, kill: func() { g.catalog.Kill() }},
	}
	if cfg.State.Enabled() {
		cs = append(cs, component{name: "routing state", start: g.startState, drain: func(ctx context.Context) error {
			g.control.GracefulStop(ctx)
			return g.state.Close()
		}, kill: func() {
			g.control.Stop()
			if err := g.state.Close(); err != nil {
				g.log.Warn("close routing state", "err", err)
			}
		}})
	}
	return append(cs,
		component{name: "serving", start: g.serve, drain: func(context.Context) error {
			g.closeListeners()
			return nil
		}, kill: func() {
			g.closeListeners()
			g.conns.kill()
		}},
		// Names answer once the import ports behind them are served, and
		// stop being answered before those close.
		component{name: "dns", start: func() error {
			if cfg.DNS.Listen == "" {
				return nil
			}
			return g.startDNS()
		}, drain: g.stopDNS, kill: func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			g.stopDNS(ctx)
		}},
		// Last to start, first to stop: readiness fails and the tunnels
		// peers opened are told to open no more streams.
		// Faults end first, so that nothing they hold delays the drain.
		component{name: "readiness", drain: func(context.Context) error {
			g.closing.Store(true)
			close(g.draining)
			g.faults.Clear()
			return nil
		}, kill: func() {
			g.closing.Store(true)
			g.faults.Clear()
		}},
	)
}

// listen binds every listener, each in its budget (budget.go): data,
// admin, connect, passthrough, the imports and the control API (before
// the catalog starts, so that its gossip metadata can carry the address).
func (g *Gateway) listen() (err error) {
	cfg := g.cfg
	lim := cfg.Limits.Listeners
	defer func() {
		if err != nil {
			g.closeListeners() // what was bound before the failure
		}
	}()
	if g.dataLn, err = g.listenIn("data", cfg.Listen.Data, lim.Data, true); err != nil {
		return fmt.Errorf("listen data plane on %s: %w", cfg.Listen.Data, err)
	}
	if g.adminLn, err = g.listenIn("admin", cfg.Listen.Admin, lim.Admin, false); err != nil {
		return fmt.Errorf("listen admin on %s: %w", cfg.Listen.Admin, err)
	}
	if cfg.Listen.Probes != "" {
		if g.probesLn, err = net.Listen("tcp", cfg.Listen.Probes); err != nil {
			return fmt.Errorf("listen probes on %s: %w", cfg.Listen.Probes, err)
		}
	}
	if cfg.Listen.Connect != "" {
		if g.connectLn, err = g.listenIn("connect", cfg.Listen.Connect, lim.Connect, false); err != nil {
			return fmt.Errorf("listen connect on %s: %w", cfg.Listen.Connect, err)
		}
	}
	if err = g.listenPassthrough(); err != nil {
		return err
	}
	auto := cfg.ImportAddresses()
	for _, im := range cfg.Imports {
		for _, at := range importListens(im, auto) {
			ln, lerr := g.listenIn("import", at, lim.Import, false)
			if lerr != nil {
				return fmt.Errorf("listen import %s:%d on %s: %w", im.Service, im.Port, at, lerr)
			}
			own := im
			own.Listen = at
			g.imports = append(g.imports, &importListener{Import: own, ln: ln})
		}
	}
	g.advertise = cfg.Advertise
	if g.advertise == "" {
		g.advertise = g.dataLn.Addr().String()
	}
	if cfg.State.Enabled() {
		if g.controlAdvertise, err = g.listenControl(); err != nil {
			return err
		}
	}
	return nil
}

// serve starts the admin server, the accept loops and the background
// tasks: nothing answers before every component is up.
func (g *Gateway) serve() error {
	g.goServe("admin", func() error { return g.admin.Serve(g.adminLn) })
	if g.probes != nil {
		g.goServe("probes", func() error { return g.probes.Serve(g.probesLn) })
	}
	g.goServe("data", func() error { return g.acceptLoop("data", g.dataLn, g.serveInbound) })
	if g.connectLn != nil {
		g.goServe("connect", func() error { return g.acceptLoop("connect", g.connectLn, g.serveConnect) })
	}
	g.servePassthroughListener()
	for _, im := range g.imports {
		g.goServe("import", func() error {
			return g.acceptLoop("import", im.ln, func(c net.Conn) { g.serveImport(c, im.Import) })
		})
	}
	g.runFaults()
	g.wg.Add(2)
	go g.health.run(g.ctx, &g.wg)
	go g.reapIdle()
	g.res.run(g.ctx, &g.wg)
	if ch := g.disc.Changes(); ch != nil {
		g.wg.Add(1)
		go g.watchDiscovery(ch)
	}
	if obs, ok := g.disc.(discovery.PortsObserver); ok {
		g.wg.Add(1)
		go g.watchPeerPorts(obs)
	}
	return nil
}

// drainConns waits for open connections and streams to end, up to
// timeouts.drain or ctx, then closes the rest.
func (g *Gateway) drainConns(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Drain)
	defer cancel()
	if !g.conns.wait(dctx) {
		n := g.conns.closeAll()
		g.log.Warn("drain deadline passed, closed connections", "open", n)
		g.conns.wait(context.Background())
	}
	return nil
}

func (g *Gateway) goServe(name string, serve func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) && !g.closing.Load() {
			g.log.Error("listener stopped", "listener", name, "err", err)
		}
	}()
}

func (g *Gateway) acceptLoop(name string, ln net.Listener, handle func(net.Conn)) error {
	backoff := retry.AcceptBackoff()
	for {
		c, err := ln.Accept()
		if err != nil {
			if g.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !backoff.Wait(g.ctx.Done()) {
					return nil
				}
				continue
			}
			return err
		}
		backoff.Reset()
		// A connection on the data port counts against
		// limits.maxConnections only once it turns out to carry one
		// stream (serveInbound): a handshake or a tunnel never does.
		if !g.conns.add(c, name != "data") {
			if !g.closing.Load() {
				g.metrics.refused.WithLabelValues(name, refusedMaxConnections).Inc()
				g.log.Debug("connection refused", "listener", name, "reason", refusedMaxConnections, "peer", c.RemoteAddr().String())
			}
			c.Close()
			continue
		}
		go func() {
			defer g.conns.done(c)
			handle(c)
		}()
	}
}

func (g *Gateway) watchDiscovery(ch <-chan struct{}) {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-ch:
			g.catalog.SetServices(g.catalogServices(g.setLocal(g.disc.Services())))
		}
	}
}

// setLocal installs a new list of local services, keeping known health.
func (g *Gateway) setLocal(svcs []discovery.Service) *localTable {
	g.localMu.Lock()
	defer g.localMu.Unlock()
	t := &localTable{byKey: make(map[string]discovery.Service, len(svcs)), down: map[string]bool{}}
	for _, s := range svcs {
		t.byKey[s.Key()] = s
	}
	if old := g.local.Load(); old != nil {
		t.down, t.services = old.down, old.services+1
	}
	g.local.Store(t)
	return t
}

// setDown installs new endpoint health and reports whether it changed.
func (g *Gateway) setDown(down map[string]bool) (*localTable, bool) {
	g.localMu.Lock()
	defer g.localMu.Unlock()
	old := g.local.Load()
	if maps.Equal(old.down, down) {
		return old, false
	}
	t := &localTable{byKey: old.byKey, down: down, services: old.services}
	g.local.Store(t)
	return t, true
}

// Catalog returns the gateway's federation catalog.
func (g *Gateway) Catalog() *catalog.Catalog { return g.catalog }

// Config returns the configuration the gateway runs with.
func (g *Gateway) Config() Config { return g.cfg }

// DataAddr returns the bound data-plane address.
func (g *Gateway) DataAddr() string { return g.dataLn.Addr().String() }

// AdminAddr returns the bound admin address.
func (g *Gateway) AdminAddr() string { return g.adminLn.Addr().String() }

// ProbesAddr returns the bound probes address, or "" without listen.probes.
func (g *Gateway) ProbesAddr() string {
	if g.probesLn == nil {
		return ""
	}
	return g.probesLn.Addr().String()
}

// GossipAddr returns the address other gateways join at.
func (g *Gateway) GossipAddr() string { return g.catalog.GossipAddr() }

// ConnectAddr returns the bound CONNECT address, or "" when disabled.
func (g *Gateway) ConnectAddr() string {
	if g.connectLn == nil {
		return ""
	}
	return g.connectLn.Addr().String()
}

// ImportAddrs returns the bound address of each import, keyed
// "ns/name:port": its own listen address, or its service's address of
// dns.importAddresses when it has none.
func (g *Gateway) ImportAddrs() map[string]string {
	out := make(map[string]string, len(g.imports))
	for _, im := range g.imports {
		if _, ok := out[im.Target().String()]; !ok {
			out[im.Target().String()] = im.ln.Addr().String()
		}
	}
	return out
}

// Shutdown stops accepting, leaves the federation, waits for open
// connections up to the drain timeout or ctx, then closes the rest: the
// lifecycle's components drained in reverse order of start.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var err error
	g.shutOnce.Do(func() {
		err = g.life.drain(ctx)
		g.log.Info("gateway stopped")
	})
	return err
}

// Kill stops the gateway as the death of its process would: every
// listener and every open connection is closed at once, with no drain,
// and gossip stops without a leave message, so the other gateways learn
// of it only from their failure detectors (and from connections that
// fail). Failover tests use it; operators stop a gateway with Shutdown.
//
// Kill does not wait for the handlers of the closed connections: they end
// as their reads and writes fail. Kill after Shutdown, or Shutdown after
// Kill, does nothing.
func (g *Gateway) Kill() {
	g.shutOnce.Do(func() {
		g.life.kill()
		g.log.Info("gateway killed")
	})
}

func (g *Gateway) closeListeners() {
	for _, ln := range []net.Listener{g.dataLn, g.connectLn, g.passthroughLn, g.adminLn, g.probesLn, g.controlLn} {
		if ln != nil {
			ln.Close()
		}
	}
	for _, im := range g.imports {
		im.ln.Close()
	}
}

// connTracker tracks open connections and tunnel streams, caps those that
// count against limits.maxConnections and lets shutdown drain them all.
type connTracker struct {
	mu      sync.Mutex
	open    map[net.Conn]bool // true: counts against max
	counted int
	max     int
	closed  bool
	zero    chan struct{} // closed when open becomes empty after closed
}

func (t *connTracker) init(max int) {
	t.open = map[net.Conn]bool{}
	t.max = max
}

// add tracks c, counted against the limit or not, or reports false when
// shutting down or, for a counted one, at the limit.
func (t *connTracker) add(c net.Conn, counted bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || counted && t.max > 0 && t.counted >= t.max {
		return false
	}
	t.open[c] = counted
	if counted {
		t.counted++
	}
	return true
}

// count starts counting a tracked c against the limit, or reports false
// at the limit: a connection from another gateway that turned out to
// carry one stream counts like a stream on a tunnel.
func (t *connTracker) count(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	counted, ok := t.open[c]
	if !ok || counted {
		return ok
	}
	if t.max > 0 && t.counted >= t.max {
		return false
	}
	t.open[c] = true
	t.counted++
	return true
}

func (t *connTracker) done(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if counted, ok := t.open[c]; ok {
		delete(t.open, c)
		if counted {
			t.counted--
		}
	}
	if t.closed && len(t.open) == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
}

// wait stops new connections and waits until none is open or ctx ends.
func (t *connTracker) wait(ctx context.Context) bool {
	t.mu.Lock()
	t.closed = true
	if len(t.open) == 0 {
		t.mu.Unlock()
		return true
	}
	if t.zero == nil {
		t.zero = make(chan struct{})
	}
	z := t.zero
	t.mu.Unlock()
	select {
	case <-z:
		return true
	case <-ctx.Done():
		return false
	}
}

func (t *connTracker) closeAll() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.open {
		c.Close()
	}
	return len(t.open)
}

// Registry returns the registry the gateway's metrics live in.
func (g *Gateway) Registry() *prometheus.Registry { return g.reg }

// kill refuses new connections and closes every open one.
func (t *connTracker) kill() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.closeAll()
}
