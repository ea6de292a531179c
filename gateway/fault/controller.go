package fault

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the fault mode's config (faults.* in the gateway's config).
type Config struct {
	// Enabled allows faults to be injected. Default false.
	Enabled bool `mapstructure:"enabled"`
	// MaxLease is the longest lease a fault may ask for. Default 5m.
	MaxLease time.Duration `mapstructure:"maxLease"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{MaxLease: 5 * time.Minute} }

// Options are a Controller's dependencies; every field is optional.
type Options struct {
	// Cluster is this gateway's own cluster: it is never a peer.
	Cluster string
	Logger  *slog.Logger
	// Registry receives strait_gateway_faults_active and _total.
	Registry prometheus.Registerer
	// Now is the lease clock. Default time.Now.
	Now func() time.Time
	// OnChange is called, outside the controller's lock and in order,
	// with the rules before and after every change (the gateway cuts
	// connections on a kill and drains on a drain).
	OnChange func(old, new *Rules)
}

// Controller holds the faults in force and their leases. Its methods are
// safe for concurrent use; Run expires leases until its context ends.
type Controller struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	active  *prometheus.GaugeVec
	total   *prometheus.CounterVec
	rules   atomic.Pointer[Rules]
	wake    chan struct{}
	changes sync.Mutex // serialises changes and their OnChange calls

	mu     sync.Mutex
	faults map[string]*Fault
	conns  map[*Conn]struct{}
}

// New returns a controller with no fault in force.
func New(cfg Config, opts Options) *Controller {
	c := &Controller{cfg: cfg, opts: opts, log: opts.Logger, now: opts.Now, wake: make(chan struct{}, 1),
		faults: map[string]*Fault{}, conns: map[*Conn]struct{}{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.cfg.MaxLease <= 0 {
		c.cfg.MaxLease = DefaultConfig().MaxLease
	}
	c.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_gateway_faults_active",
		Help: "Faults in force on this gateway (fault mode, faults.enabled), by kind."}, []string{"kind"})
	c.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_gateway_faults_total",
		Help: "Faults injected, undone by request and expired without renewal, by kind."}, []string{"kind", "outcome"})
	if opts.Registry != nil {
		opts.Registry.MustRegister(c.active, c.total)
	}
	return c
}

// Collectors are the controller's metrics (for unregistering them).
func (c *Controller) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.active, c.total}
}

// Enabled reports whether faults may be injected.
func (c *Controller) Enabled() bool { return c != nil && c.cfg.Enabled }

// Rules returns the rules in force, or nil when no fault is.
func (c *Controller) Rules() *Rules {
	if c == nil {
		return nil
	}
	return c.rules.Load()
}

// Inject puts s in force for its lease, or renews the lease of the fault
// in force under s.ID when it asks for the same fault.
func (c *Controller) Inject(s Spec) (Fault, error) {
	if !c.Enabled() {
		return Fault{}, ErrOff
	}
	if err := s.validate(c.cfg.MaxLease); err != nil {
		return Fault{}, err
	}
	s = s.applicable()
	s.Peers = slices.Clone(s.Peers)
	sort.Strings(s.Peers)
	s.Peers = slices.Compact(s.Peers)
	c.changes.Lock()
	defer c.changes.Unlock()
	now := c.now()
	c.mu.Lock()
	if f, ok := c.faults[s.ID]; ok {
		if !sameFault(f.Spec, s) {
			c.mu.Unlock()
			return Fault{}, ErrConflict
		}
		f.Lease = s.Lease
		f.Expires = now.Add(time.Duration(s.Lease))
		out := *f
		c.mu.Unlock()
		c.log.Info("fault lease renewed", "fault", s.ID, "kind", s.Kind, "expires", out.Expires)
		c.kick()
		return out, nil
	}
	f := &Fault{Spec: s, Injected: now, Expires: now.Add(time.Duration(s.Lease))}
	c.faults[s.ID] = f
	out := *f
	old, next := c.publishLocked()
	c.mu.Unlock()
	c.active.WithLabelValues(string(s.Kind)).Inc()
	c.total.WithLabelValues(string(s.Kind), "injected").Inc()
	c.log.Info("fault injected", "fault", s.ID, "kind", s.Kind, "peers", s.Peers, "delay", time.Duration(s.Delay),
		"jitter", time.Duration(s.Jitter), "percent", s.Percent, "lease", time.Duration(s.Lease))
	c.changed(old, next)
	c.kick()
	return out, nil
}

// Undo ends the fault id at once.
func (c *Controller) Undo(id string) (Fault, error) {
	if !c.Enabled() {
		return Fault{}, ErrOff
	}
	c.changes.Lock()
	defer c.changes.Unlock()
	c.mu.Lock()
	f, ok := c.faults[id]
	if !ok {
		c.mu.Unlock()
		return Fault{}, ErrNotFound
	}
	delete(c.faults, id)
	old, next := c.publishLocked()
	c.mu.Unlock()
	c.active.WithLabelValues(string(f.Kind)).Dec()
	c.total.WithLabelValues(string(f.Kind), "undone").Inc()
	c.log.Info("fault undone", "fault", id, "kind", f.Kind)
	c.changed(old, next)
	return *f, nil
}

// List returns the faults in force, by id.
func (c *Controller) List() []Fault {
	out := []Fault{}
	if c == nil {
		return out
	}
	c.mu.Lock()
	for _, f := range c.faults {
		out = append(out, *f)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Expire undoes every fault whose lease ran out by now and returns when
// the next lease runs out (zero when none is held).
func (c *Controller) Expire() time.Time {
	c.changes.Lock()
	defer c.changes.Unlock()
	now := c.now()
	var gone []*Fault
	var next time.Time
	c.mu.Lock()
	for id, f := range c.faults {
		if !now.Before(f.Expires) {
			gone = append(gone, f)
			delete(c.faults, id)
		} else if next.IsZero() || f.Expires.Before(next) {
			next = f.Expires
		}
	}
	if len(gone) == 0 {
		c.mu.Unlock()
		return next
	}
	old, rules := c.publishLocked()
	c.mu.Unlock()
	for _, f := range gone {
		c.active.WithLabelValues(string(f.Kind)).Dec()
		c.total.WithLabelValues(string(f.Kind), "expired").Inc()
		c.log.Warn("fault lease ran out without renewal: undone", "fault", f.ID, "kind", f.Kind, "expired", f.Expires)
	}
	c.changed(old, rules)
	return next
}

// Run expires leases as they run out until ctx ends. The wait is taken
// from the controller's clock in real time; tests with a fake clock call
// Expire instead.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := c.Expire()
		d := time.Hour
		if !next.IsZero() {
			d = max(next.Sub(c.now()), time.Millisecond)
		}
		t.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-t.C:
		}
	}
}

// Clear undoes every fault (the gateway stops).
func (c *Controller) Clear() {
	if c == nil {
		return
	}
	for _, f := range c.List() {
		_, _ = c.Undo(f.ID)
	}
}

func (c *Controller) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// publishLocked swaps in the rules of c.faults and closes the old ones'
// changed channel, waking held connections.
func (c *Controller) publishLocked() (old, next *Rules) {
	if len(c.faults) > 0 {
		next = newRules(c.opts.Cluster, c.faults)
	}
	old = c.rules.Swap(next)
	if old != nil {
		close(old.changed)
	}
	return old, next
}

func (c *Controller) changed(old, next *Rules) {
	if next.Has(Kill) && !old.Has(Kill) {
		// Open connections and tunnels are cut.
		for _, cn := range c.tracked() {
			cn.closeNow()
		}
	}
	if c.opts.OnChange != nil {
		c.opts.OnChange(old, next)
	}
}

func (c *Controller) track(cn *Conn) {
	c.mu.Lock()
	c.conns[cn] = struct{}{}
	c.mu.Unlock()
}

func (c *Controller) untrack(cn *Conn) {
	c.mu.Lock()
	delete(c.conns, cn)
	c.mu.Unlock()
}

func (c *Controller) tracked() []*Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Conn, 0, len(c.conns))
	for cn := range c.conns {
		out = append(out, cn)
	}
	return out
}
