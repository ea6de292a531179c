package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
	"go.opentelemetry.io/otel/trace"
)

// ClusterSpec describes one cluster of a lab.
type ClusterSpec struct {
	Name   string
	Region string
	Zone   string
	Cloud  string
	// Host is the loopback address the gateway binds. Default 127.0.0.1.
	Host string
	// Fixed ports; 0 picks a free port.
	DataPort, GossipPort, AdminPort, ConnectPort, ControlPort, RaftPort, PassthroughPort int
	// Voter makes the gateway a routing-state voter (Spec.State).
	Voter bool
	// NoTunnels turns this gateway's tunnels off (Spec.NoTunnels for all).
	NoTunnels bool
	// MaxConnections overrides limits.maxConnections when non-zero.
	MaxConnections int
	// Services are the cluster's local services (already running).
	Services []discovery.Service
	// Imports give remote services local ports on the gateway.
	Imports []gateway.Import
	// Policy overrides Spec.Policy for this cluster's gateway.
	Policy []byte
}

// Spec describes a lab.
type Spec struct {
	// TrustDomain of the ephemeral CA. Default strait.local.
	TrustDomain string
	Clusters    []ClusterSpec
	// Logger for the gateways. Default: discard, or stderr at the level
	// of the environment variable STRAIT_LAB_LOG (debug, info, warn).
	Logger *slog.Logger
	// GossipProfile is lan, wan or local (default local).
	GossipProfile string
	// GossipKey encrypts gossip (base64). Default: a fresh random key.
	GossipKey string
	// Timeouts override the gateway defaults when non-zero.
	Timeouts gateway.Timeouts
	// NoTunnels turns the gateways' pooled tunnels off: every stream
	// between gateways is its own mTLS connection.
	NoTunnels bool
	// NoEarlyData turns tunnels.earlyData off: client bytes wait for the
	// remote answer.
	NoEarlyData bool
	// Health overrides the gateway's endpoint health check when its
	// Interval is set; thresholds left zero keep their defaults.
	Health gateway.HealthConfig
	// Outlier overrides the gateway's outlier ejection when non-zero.
	Outlier route.OutlierConfig
	// HTTP configures every gateway's HTTP layer.
	HTTP gateway.HTTPConfig
	// DirectLinks skips the emulated links: gateways dial each other
	// directly (benchmarks of the gateway itself).
	DirectLinks bool
	// Version is reported by the gateways' status.
	Version string
	// Policy is the residency policy document every gateway enforces
	// (each holds it in its own MemoryPolicySource, as if from the routing
	// state). Nil: no policy, every flow allowed.
	Policy []byte
	// PolicyName names the policy document in rule positions and problems.
	// Default "lab-policy.yaml".
	PolicyName string
	// AuditDir, when set, receives each gateway's residency audit trail
	// as <cluster>.jsonl.
	AuditDir string
	// State runs the Raft-backed routing state on every gateway: the
	// clusters marked Voter bootstrap it together, the others join as
	// non-voters. The first cluster must be a voter.
	State bool
	// StateDir holds each gateway's state in a subdirectory. Default: a
	// temporary directory removed by Close.
	StateDir string
	// StateHeartbeat is state.heartbeatTimeout. Default 500ms.
	StateHeartbeat time.Duration
	// StateStaleAfter is state.staleAfter. Default 2s.
	StateStaleAfter time.Duration
	// Tune, when set, changes each cluster's gateway config last, before
	// the gateway starts (budgets and timeouts the spec has no field for).
	Tune func(cluster string, cfg *gateway.Config)
	// CertFiles gives each gateway its certificate as files (CertDir)
	// that it watches every 100ms, as a gateway whose certificates
	// another tool writes; RotateCert replaces them. Default: the lab
	// hands each gateway a fixed certificate.
	CertFiles bool
	// CertAuthority runs the federation's own CA (needs State): the lab's
	// CA is the offline root, the voters hold an intermediate and sign
	// their own certificates, and every other gateway enrols with a join
	// token written by an operator once the voters have a leader, then
	// renews through the control API (tls.source ca). Voters start
	// first. CertLifetime is the certificates' lifetime (default 24h),
	// checked for renewal every tenth of it.
	CertAuthority bool
	CertLifetime  time.Duration
	// ConfigIdentity leaves each gateway's identity to its config, as a
	// `strait gateway` process has it: Tune sets tls.* (tls.source acme
	// with tls.acme, for one) and the gateway runs its own certificate
	// manager. The lab hands it no certificate and Lab.Identity returns
	// nil for it. Default: the lab hands each gateway a fixed
	// certificate.
	ConfigIdentity bool
	// TracerProvider, when set, gives each cluster's gateway the provider
	// its spans go to (gateway.Options.TracerProvider). Default: tracing
	// off.
	TracerProvider func(cluster string) trace.TracerProvider
}

// Lab is a running federation.
type Lab struct {
	CA        *identity.CA
	gossipKey string
	links     *linkSet

	// StateDir holds the gateways' routing state ("" without Spec.State).
	StateDir    string
	ownStateDir bool
	// certDir holds each gateway's certificate files (Spec.CertFiles).
	certDir string

	mu       sync.Mutex
	order    []string
	gateways map[string]*gateway.Gateway
	specs    map[string]ClusterSpec
	stopped  map[string]bool
	policies map[string]*gateway.MemoryPolicySource
	ids      map[string]*identity.Bundle
	state    bool // the policy lives in the routing state
}

// Start starts every cluster's gateway, joins them into one gossip pool,
// wires the links and waits until every gateway knows every other
// cluster's services.
func Start(ctx context.Context, spec Spec) (l *Lab, err error) {
	if len(spec.Clusters) == 0 {
		return nil, errors.New("lab: no clusters")
	}
	if spec.TrustDomain == "" {
		spec.TrustDomain = "strait.local"
	}
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
		// STRAIT_LAB_LOG=debug|info|warn writes the gateways' logs to
		// stderr (a failing lab test explained).
		var level slog.Level
		if v := os.Getenv("STRAIT_LAB_LOG"); v != "" && level.UnmarshalText([]byte(v)) == nil {
			spec.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
		}
	}
	if spec.GossipProfile == "" {
		spec.GossipProfile = "local"
	}
	if spec.GossipKey == "" {
		if spec.GossipKey, err = catalog.GenerateKey(); err != nil {
			return nil, err
		}
	}
	ca, err := identity.NewCA(spec.TrustDomain, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	l = &Lab{CA: ca, gossipKey: spec.GossipKey, gateways: map[string]*gateway.Gateway{}, specs: map[string]ClusterSpec{}, stopped: map[string]bool{},
		policies: map[string]*gateway.MemoryPolicySource{}, ids: map[string]*identity.Bundle{}}
	l.links = newLinkSet()
	started := l // l is nil once an error is returned
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	var seed string
	var controls []string
	voters := 0
	for _, cs := range spec.Clusters {
		if cs.Voter {
			voters++
		}
	}
	if spec.State {
		if l.StateDir = spec.StateDir; l.StateDir == "" {
			if l.StateDir, err = os.MkdirTemp("", "strait-lab-"); err != nil {
				return nil, fmt.Errorf("lab: state dir: %w", err)
			}
			l.ownStateDir = true
		}
	}
	if spec.CertFiles {
		if l.certDir, err = os.MkdirTemp("", "strait-lab-certs-"); err != nil {
			return nil, fmt.Errorf("lab: certificate dir: %w", err)
		}
	}
	startOrder := spec.Clusters
	var inter [2]string
	if spec.CertAuthority {
		if !spec.State {
			return nil, errors.New("lab: CertAuthority needs State")
		}
		if inter[0], inter[1], err = ca.WriteIntermediateFiles(filepath.Join(l.StateDir, "ca"), 23*time.Hour); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		// Voters first: the others enrol with the leader they elect.
		startOrder = slices.Clone(spec.Clusters)
		slices.SortStableFunc(startOrder, func(a, b ClusterSpec) int {
			switch {
			case a.Voter == b.Voter:
				return 0
			case a.Voter:
				return -1
			}
			return 1
		})
	}
	for _, cs := range startOrder {
		if _, dup := l.specs[cs.Name]; dup {
			return nil, fmt.Errorf("lab: cluster %s listed twice", cs.Name)
		}
		if cs.Host == "" {
			cs.Host = "127.0.0.1"
		}
		cfg := gateway.DefaultConfig()
		cfg.Cluster, cfg.Region, cfg.Zone, cfg.Cloud = cs.Name, cs.Region, cs.Zone, cs.Cloud
		cfg.TrustDomain = spec.TrustDomain
		cfg.Listen.Data = hostPort(cs.Host, cs.DataPort)
		cfg.Listen.Admin = hostPort(cs.Host, cs.AdminPort)
		cfg.Listen.Connect = hostPort(cs.Host, cs.ConnectPort)
		cfg.Listen.Passthrough = hostPort(cs.Host, cs.PassthroughPort)
		cfg.Gossip.Bind = hostPort(cs.Host, cs.GossipPort)
		cfg.Gossip.NodeName = cs.Name
		cfg.Gossip.Profile = spec.GossipProfile
		cfg.Gossip.Key = spec.GossipKey
		if seed != "" {
			cfg.Gossip.Join = []string{seed}
		}
		if spec.Timeouts.Connect > 0 {
			cfg.Timeouts.Connect = spec.Timeouts.Connect
		}
		if spec.Timeouts.Budget > 0 {
			cfg.Timeouts.Budget = spec.Timeouts.Budget
		}
		if spec.Timeouts.Drain > 0 {
			cfg.Timeouts.Drain = spec.Timeouts.Drain
		}
		if spec.Timeouts.Idle > 0 {
			cfg.Timeouts.Idle = spec.Timeouts.Idle
		}
		cfg.Tunnels.Enabled = !spec.NoTunnels && !cs.NoTunnels
		cfg.Tunnels.EarlyData = !spec.NoEarlyData
		if cs.MaxConnections > 0 {
			cfg.Limits.MaxConnections = cs.MaxConnections
		}
		if spec.Health.Interval > 0 {
			h := spec.Health
			if h.UnhealthyThreshold == 0 {
				h.UnhealthyThreshold = cfg.Health.UnhealthyThreshold
			}
			if h.HealthyThreshold == 0 {
				h.HealthyThreshold = cfg.Health.HealthyThreshold
			}
			cfg.Health = h
		}
		if spec.Outlier.ConsecutiveFailures > 0 {
			cfg.Outlier = spec.Outlier
		}
		cfg.Services = cs.Services
		cfg.Imports = cs.Imports
		cfg.HTTP = spec.HTTP
		if spec.AuditDir != "" {
			cfg.Residency.Audit.File = filepath.Join(spec.AuditDir, cs.Name+".jsonl")
		}
		var policy gateway.PolicySource
		doc := spec.Policy
		if cs.Policy != nil {
			doc = cs.Policy
		}
		if doc != nil && spec.State && cs.Policy == nil {
			// With the routing state the policy lives in Raft: every
			// gateway starts on the file (validated) and switches to the
			// replicated record once it is written below.
			file := filepath.Join(l.StateDir, cs.Name+"-residency.yaml")
			if err := os.WriteFile(file, doc, 0o644); err != nil {
				return nil, fmt.Errorf("lab: %w", err)
			}
			cfg.Residency.Policy = file
		} else if doc != nil {
			name := spec.PolicyName
			if name == "" || cs.Policy != nil {
				name = cs.Name + "-policy.yaml"
			}
			e, err := sovereignty.Compile(name, doc)
			if err != nil {
				return nil, fmt.Errorf("lab: %w", err)
			}
			src := gateway.NewMemoryPolicySource(e)
			l.policies[cs.Name] = src
			policy = src
		}
		if spec.State {
			cfg.State.DataDir = filepath.Join(l.StateDir, cs.Name)
			cfg.State.Bind = hostPort(cs.Host, cs.RaftPort)
			cfg.Listen.Control = hostPort(cs.Host, cs.ControlPort)
			cfg.State.Voter = cs.Voter
			if cs.Voter {
				cfg.State.BootstrapExpect = voters
			}
			cfg.State.Join = append([]string(nil), controls...)
			cfg.State.HeartbeatTimeout = cmp.Or(spec.StateHeartbeat, 500*time.Millisecond)
			cfg.State.StaleAfter = cmp.Or(spec.StateStaleAfter, 2*time.Second)
		}
		if !spec.ConfigIdentity {
			// The lab supplies the identity; the file paths only satisfy
			// validation (Spec.CertFiles sets real ones below).
			cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA = "(lab)", "(lab)", "(lab)"
		}
		if spec.Tune != nil {
			spec.Tune(cs.Name, &cfg)
		}
		role := identity.RoleGateway
		if spec.State && cs.Voter {
			role = identity.RoleVoter
		}
		var bundle *identity.Bundle
		switch {
		case spec.ConfigIdentity:
			// The gateway makes its identity from cfg.TLS.
		case spec.CertAuthority:
			cfg.TLS.Source, cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA = identity.SourceCA, "", "", ""
			lifetime := cmp.Or(spec.CertLifetime, 24*time.Hour)
			cfg.TLS.RenewCheck = max(lifetime/10, 100*time.Millisecond)
			cfg.TLS.Authority.Lifetime = lifetime
			if cs.Voter {
				cfg.State.CA = state.CAConfig{Intermediate: inter[0], IntermediateKey: inter[1], Lifetime: lifetime}
			} else {
				file := filepath.Join(l.StateDir, cs.Name+"-join-token")
				if err := l.writeJoinToken(ctx, controls, cs, file); err != nil {
					return nil, err
				}
				cfg.TLS.Authority.TokenFile = file
			}
		case spec.CertFiles:
			dir := filepath.Join(l.certDir, cs.Name)
			if err := ca.WriteIDFiles(dir, identity.ID{Role: role, Region: cs.Region, Cluster: cs.Name}, 24*time.Hour); err != nil {
				return nil, fmt.Errorf("lab: %w", err)
			}
			cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
			cfg.TLS.Watch = 100 * time.Millisecond
		default:
			cert, err := ca.IssueID(identity.ID{Role: role, Region: cs.Region, Cluster: cs.Name}, 24*time.Hour)
			if err != nil {
				return nil, err
			}
			if bundle, err = identity.NewBundle(cert, ca.Roots()); err != nil {
				return nil, err
			}
		}
		from := cs.Name
		g, err := gateway.Start(cfg, gateway.Options{
			Logger:         spec.Logger,
			Identity:       bundle,
			Version:        spec.Version,
			Policy:         policy,
			TracerProvider: tracerFor(spec, cs.Name),
			DialGateway: func(ctx context.Context, addr string) (net.Conn, error) {
				return l.links.dial(ctx, from, addr)
			},
		})
		if err != nil {
			return nil, fmt.Errorf("lab: start gateway %s: %w", cs.Name, err)
		}
		l.mu.Lock()
		l.order = append(l.order, cs.Name)
		l.gateways[cs.Name] = g
		l.ids[cs.Name] = bundle
		l.specs[cs.Name] = cs
		l.mu.Unlock()
		if seed == "" {
			seed = g.GossipAddr()
		}
		if spec.State {
			controls = append(controls, g.ControlAddr())
		}
	}
	if spec.CertAuthority { // started voters first; listed as specified
		pos := map[string]int{}
		for i, cs := range spec.Clusters {
			pos[cs.Name] = i
		}
		l.mu.Lock()
		slices.SortFunc(l.order, func(a, b string) int { return pos[a] - pos[b] })
		l.mu.Unlock()
	}
	for _, a := range l.order {
		for _, b := range l.order {
			if a == b || spec.DirectLinks {
				continue
			}
			if err := l.links.add(a, b, l.gateways[b].DataAddr()); err != nil {
				return nil, err
			}
		}
	}
	if err := l.WaitConverged(ctx); err != nil {
		return nil, err
	}
	if spec.State {
		if err := l.WaitState(ctx); err != nil {
			return nil, err
		}
		if spec.Policy != nil {
			l.state = true
			if err := l.SetPolicy(spec.Policy); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// WaitState waits until every running gateway is in the routing state's
// configuration with its addresses recorded, knows the leader, and routes
// on the same index.
func (l *Lab) WaitState(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		missing := l.stateUnconverged()
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: routing state did not converge: %s: %w", missing, ctx.Err())
		case <-tick.C:
		}
	}
}

func (l *Lab) stateUnconverged() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var index uint64
	first := true
	for _, name := range l.order {
		if l.stopped[name] {
			continue
		}
		st := l.gateways[name].State()
		if st == nil {
			return name + " runs without routing state"
		}
		h := st.Health()
		switch {
		case h.Leader == "":
			return name + " knows no leader"
		case h.Records["member"] != len(l.order):
			return fmt.Sprintf("%s knows %d of %d members", name, h.Records["member"], len(l.order))
		case !first && h.Index != index:
			return fmt.Sprintf("%s is at index %d, others at %d", name, h.Index, index)
		}
		index, first = h.Index, false
	}
	return ""
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// Clusters returns the cluster names in start order.
func (l *Lab) Clusters() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.order...)
}

// Spec returns the spec of cluster name.
func (l *Lab) Spec(name string) ClusterSpec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.specs[name]
}

// Gateway returns the gateway of cluster name, or nil.
func (l *Lab) Gateway(name string) *gateway.Gateway {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gateways[name]
}

// Identity returns the mTLS identity of cluster name's gateway: tests
// re-issue its certificate (Bundle.SetCertificate) or read the trust it
// verifies peers by.
func (l *Lab) Identity(name string) *identity.Bundle {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids[name]
}

// Link returns the emulated link carrying traffic from cluster from to
// cluster to.
func (l *Lab) Link(from, to string) *Link { return l.links.get(from, to) }

// SetPolicy compiles doc and installs it on every gateway that runs a lab
// policy, each as its next version, as the routing state would. An
// invalid document changes nothing: each gateway audits the refusal and
// keeps its policy.
func (l *Lab) SetPolicy(doc []byte) error {
	if l.state {
		return l.applyPolicy(doc)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var firstErr error
	for _, name := range l.order {
		if src := l.policies[name]; src != nil {
			if _, err := src.SetDocument("lab policy", doc); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// applyPolicy writes doc to the routing state through the first running
// gateway, as 'strait policy apply' does, and waits until every running
// gateway enforces that version.
func (l *Lab) applyPolicy(doc []byte) error {
	if _, err := sovereignty.Compile("lab policy", doc); err != nil {
		return err
	}
	var via *gateway.Gateway
	l.mu.Lock()
	for _, name := range l.order {
		if !l.stopped[name] {
			via = l.gateways[name]
			break
		}
	}
	l.mu.Unlock()
	if via == nil {
		return errors.New("lab: no gateway running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// As an operator would: through a gateway's control API, with an
	// operator certificate of its own.
	ops, err := l.Operator(via.ControlAddr())
	if err != nil {
		return err
	}
	defer ops.Close()
	resp, err := ops.Write(ctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindPolicy, Key: "default", Value: string(doc)})
	if err != nil {
		return fmt.Errorf("lab: apply policy: %w", err)
	}
	for {
		behind := ""
		l.mu.Lock()
		for _, name := range l.order {
			if _, v := l.gateways[name].Policy(); !l.stopped[name] && v < resp.Index {
				behind = name
			}
		}
		l.mu.Unlock()
		if behind == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %s does not enforce policy index %d: %w", behind, resp.Index, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// GossipKey returns the key the gateways' gossip is encrypted with.
func (l *Lab) GossipKey() string { return l.gossipKey }

// Operator returns a control-API client to addr that presents a
// certificate of the lab's CA for operator "lab".
func (l *Lab) Operator(addr string) (*state.ControlClient, error) {
	cert, err := l.CA.IssueID(identity.ID{Role: identity.RoleOperator, Name: "lab"}, time.Hour)
	if err != nil {
		return nil, err
	}
	id, err := identity.NewBundle(cert, l.CA.Roots())
	if err != nil {
		return nil, err
	}
	return state.DialControl(addr, id)
}

// StopGateway shuts cluster name's gateway down gracefully.
func (l *Lab) StopGateway(ctx context.Context, name string) error {
	g, err := l.markStopped(name)
	if g == nil || err != nil {
		return err
	}
	return g.Shutdown(ctx)
}

// KillGateway stops cluster name's gateway as the death of its process
// would (gateway.Kill): listeners and connections closed at once, no
// drain, no gossip leave.
func (l *Lab) KillGateway(name string) error {
	g, err := l.markStopped(name)
	if g != nil {
		g.Kill()
	}
	return err
}

// markStopped records that cluster name's gateway stops and returns it,
// or nil when it was stopped before.
func (l *Lab) markStopped(name string) (*gateway.Gateway, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.gateways[name]
	if g == nil {
		return nil, fmt.Errorf("lab: no cluster %s", name)
	}
	if l.stopped[name] {
		return nil, nil
	}
	l.stopped[name] = true
	return g, nil
}

// WaitConverged waits until every running gateway sees every other running
// gateway as reachable with the services it exports.
func (l *Lab) WaitConverged(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		missing := l.unconverged()
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: federation did not converge: %s: %w", missing, ctx.Err())
		case <-tick.C:
		}
	}
}

func (l *Lab) unconverged() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.order {
		if l.stopped[a] {
			continue
		}
		snap := l.gateways[a].Catalog().Snapshot()
		for _, b := range l.order {
			if l.stopped[b] {
				continue
			}
			want := l.visible(b, l.specs[a].Region)
			ok := false
			for _, c := range snap.Clusters {
				if c.Cluster == b && c.Reachable && len(c.Services) == want {
					ok = true
				}
			}
			if !ok {
				return fmt.Sprintf("%s does not yet see %s", a, b)
			}
		}
	}
	return ""
}

// visible counts the services of cluster b that a gateway in region may
// see: region-only services are withheld from other regions.
func (l *Lab) visible(b, region string) int {
	scope := l.gateways[b].CatalogScope()
	n := 0
	for _, s := range l.specs[b].Services {
		regions, restricted := scope.CatalogRegions(s.Namespace, s.Name, s.Labels)
		if !restricted || slices.Contains(regions, region) {
			n++
		}
	}
	return n
}

// Close stops every gateway and link.
func (l *Lab) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, name := range l.Clusters() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.StopGateway(ctx, name)
		}()
	}
	wg.Wait()
	l.links.close()
	if l.ownStateDir {
		os.RemoveAll(l.StateDir)
	}
	if l.certDir != "" {
		os.RemoveAll(l.certDir)
	}
}

// tracerFor is the tracer provider of cluster's gateway: nil (tracing
// off) unless Spec.TracerProvider gives one.
func tracerFor(spec Spec, cluster string) trace.TracerProvider {
	if spec.TracerProvider == nil {
		return nil
	}
	return spec.TracerProvider(cluster)
}
