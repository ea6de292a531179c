package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/straitmesh/strait/gateway/fault"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/route"
)

// Options tune a run.
type Options struct {
	// Lease is how long a gateway keeps a fault without hearing from the
	// drill: the drill renews every third of it, and a drill that dies
	// leaves no fault behind for longer. Default 15s.
	Lease time.Duration
	// RequestTimeout bounds each request of the drill's traffic. Default 2s.
	RequestTimeout time.Duration
	// Progress, when set, gets a line per step, stop condition and undo.
	Progress io.Writer
	// Logger gets the same as key-value records. Default: discard.
	Logger *slog.Logger
	// Target names where the drill runs in the result. Default "federation FILE".
	Target string
	// File names the drill file in the result.
	File string
}

func (o *Options) defaults(f *Federation) {
	if o.Lease <= 0 {
		o.Lease = 15 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Target == "" {
		o.Target = "federation " + f.file
	}
}

// run is one run of a drill.
type run struct {
	d     *Drill
	f     *Federation
	opts  Options
	api   *faultAPI
	plans []StepPlan
	rec   *recorder
	begin time.Time

	classes [][]ClassInfo // per traffic

	mu       sync.Mutex
	steps    []StepRecord
	active   map[int]bool   // plan index -> its faults are in place
	downGW   map[string]int // "cluster/gateway" -> faults holding it down
	vios     []Violation
	abort    *Abort
	abortCh  chan struct{}
	abortOne sync.Once
	// changing serializes what changes the faults in place (a step, a lease
	// renewal, undoing them all), so that an undo never overtakes an
	// inject or a renewal still on its way to a gateway.
	changing sync.Mutex
	// stopping counts the stops under way.
	stopping sync.WaitGroup
}

// Run carries out drill d on federation f: it drives the traffic, injects
// and undoes the faults on time (renewing their leases), watches the stop
// conditions, undoes every fault at the end, on an abort or when ctx
// ends, and judges the expectations. The error is for a drill that could
// not run at all; a failed expectation is Result.Pass false.
func Run(ctx context.Context, d *Drill, f *Federation, opts Options) (*Result, error) {
	opts.defaults(f)
	r := &run{d: d, f: f, opts: opts, api: newFaultAPI(), active: map[int]bool{}, downGW: map[string]int{},
		abortCh: make(chan struct{})}
	var err error
	if r.plans, err = f.Plan(d, runID()); err != nil {
		return nil, err
	}
	if err := r.preflight(ctx); err != nil {
		return nil, err
	}
	r.classes = r.resolveClasses(ctx)
	r.rec = newRecorder(len(d.Traffic))
	r.rec.onSample = r.check
	r.steps = make([]StepRecord, len(r.plans))
	for i, p := range r.plans {
		r.steps[i] = StepRecord{Name: p.Step.Name, Kind: p.Step.Kind, Touches: p.Touches, At: p.Step.At}
	}

	drivers := r.drivers()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var reqs, loops sync.WaitGroup
	r.begin = time.Now()
	fmt.Fprintf(r.opts.Progress, "drill %s: %s on %s\n", d.Name, d.Duration, r.opts.Target)
	for _, dr := range drivers {
		loops.Add(1)
		go func() {
			defer loops.Done()
			dr.run(runCtx, r.begin, r.rec, r.isDown, &reqs)
		}()
	}
	r.followAudit(runCtx, &loops)
	loops.Add(2)
	go func() { defer loops.Done(); r.renewLeases(runCtx) }()
	go func() { defer loops.Done(); r.guard(runCtx) }()

	r.timeline(runCtx)
	ran := time.Since(r.begin)
	stop()
	loops.Wait()
	reqs.Wait()
	r.stopping.Wait()
	for _, dr := range drivers {
		for _, cs := range dr.clients {
			for _, c := range cs {
				c.close()
			}
		}
	}
	r.undoAll("the drill ended")
	res := r.result(ran)
	if ctx.Err() != nil && r.abort == nil {
		return res, fmt.Errorf("drill %s interrupted after %s: every fault undone: %w", d.Name, ran.Round(time.Second), ctx.Err())
	}
	return res, nil
}

func runID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// preflight checks that every gateway's admin API answers and that each
// cluster traffic comes from has an entry for it.
func (r *run) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	for ci := range r.f.Clusters {
		for gi := range r.f.Clusters[ci].Gateways {
			g := &r.f.Clusters[ci].Gateways[gi]
			if _, err := r.api.faults(ctx, g); err != nil {
				errs = append(errs, fmt.Errorf("cluster %s gateway %s: %w", r.f.Clusters[ci].Name, g.Name, err))
			}
		}
	}
	for _, t := range r.d.Traffic {
		for _, from := range t.From {
			c, _ := r.f.Cluster(from)
			for _, g := range c.Gateways {
				if g.Connect == "" && g.Imports[t.To.String()] == "" {
					errs = append(errs, fmt.Errorf("traffic %s: gateway %s of %s has no connect address and no import for %s", t.Name, g.Name, from, t.To))
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("drill %s cannot run on %s:\n%w", r.d.Name, r.f.file, errors.Join(errs...))
	}
	return nil
}

// resolveClasses asks the policy in force, read from a gateway of each
// traffic's first cluster, which residency classes the traffic carries.
func (r *run) resolveClasses(ctx context.Context) [][]ClassInfo {
	out := make([][]ClassInfo, len(r.d.Traffic))
	w, err := whatIfOf(ctx, r.f)
	if err != nil {
		r.opts.Logger.Warn("drill: no residency policy to classify the traffic; residency is judged by the expectations alone", "err", err)
		fmt.Fprintf(r.opts.Progress, "warning: %v: residency is judged by the expectations alone\n", err)
		return out
	}
	for i, t := range r.d.Traffic {
		seen := map[string]bool{}
		for _, from := range t.From {
			ex, err := w.Explain(explainQuery(&t, from))
			if err != nil {
				continue
			}
			for _, c := range ex.Classes {
				if !seen[c.Name] {
					seen[c.Name] = true
					out[i] = append(out[i], ClassInfo{Name: c.Name, Regions: c.Allowed})
				}
			}
		}
	}
	return out
}

func explainQuery(t *Traffic, from string) route.ExplainQuery {
	q := route.ExplainQuery{Namespace: t.To.Namespace, Name: t.To.Name, Port: t.To.Port, From: from}
	if len(t.Headers) > 0 && t.Protocol != ProtocolTCP {
		q.Headers = http.Header{}
		for k, v := range t.Headers {
			q.Headers.Set(k, v)
		}
	}
	return q
}

// whatIfOf reads the topology and the policy in force from the first
// gateway of f that answers.
func whatIfOf(ctx context.Context, f *Federation) (route.WhatIf, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	for _, c := range f.Clusters {
		for _, g := range c.Gateways {
			cl := admin.Client{Addr: g.Admin, Token: g.token}
			st, err := cl.Status(ctx)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			eng, version, err := cl.Policy(ctx)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			return route.WhatIf{Policy: eng, Version: version, Top: st.Topology()}, nil
		}
	}
	return route.WhatIf{}, fmt.Errorf("read the policy in force: %w", errors.Join(errs...))
}

func (r *run) drivers() []*driver {
	var out []*driver
	for i := range r.d.Traffic {
		t := &r.d.Traffic[i]
		end := r.d.Duration
		if t.Duration > 0 {
			end = t.Start + t.Duration
		}
		dr := &driver{index: i, t: t, end: end, clients: map[string][]*client{},
			inflight: make(chan struct{}, max(64, 2*t.Rate*int(r.opts.RequestTimeout/time.Second+1)))}
		for _, from := range t.From {
			c, _ := r.f.Cluster(from)
			for gi := range c.Gateways {
				dr.clients[from] = append(dr.clients[from], newClient(t, from, &c.Gateways[gi], r.opts.RequestTimeout))
			}
		}
		out = append(out, dr)
	}
	return out
}

func (r *run) since() time.Duration { return time.Since(r.begin) }

// isDown says whether the drill holds a gateway down (its clients then
// enter through another gateway of the cluster, as a Service would send
// them to a ready one).
func (r *run) isDown(cluster, gw string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.downGW[cluster+"/"+gw] > 0
}

// timeline carries out the steps on time until the drill's end, an abort
// or ctx's end.
func (r *run) timeline(ctx context.Context) {
	for i, p := range r.plans {
		if !r.sleepUntil(ctx, p.Step.At) {
			return
		}
		if p.Step.Kind == Restore {
			r.restore(ctx, i)
		} else {
			r.inject(ctx, i)
		}
	}
	r.sleepUntil(ctx, r.d.Duration)
}

func (r *run) sleepUntil(ctx context.Context, at time.Duration) bool {
	t := time.NewTimer(time.Until(r.begin.Add(at)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-r.abortCh:
		return false
	}
}

// holdsDown says whether a fault of kind k takes its gateway out of
// service, so that the drill's clients in its cluster enter elsewhere.
func holdsDown(k fault.Kind) bool {
	return k == fault.Kind(Kill) || k == fault.Kind(Freeze) || k == fault.Kind(Drain)
}

func (r *run) inject(ctx context.Context, i int) {
	r.changing.Lock()
	defer r.changing.Unlock()
	p := r.plans[i]
	r.mu.Lock()
	if r.abort != nil {
		r.mu.Unlock()
		return
	}
	r.active[i] = true // renewals and undo cover it from now on
	for _, a := range p.Actions {
		if holdsDown(a.Fault.Kind) {
			r.downGW[a.Cluster+"/"+a.Gateway.Name]++
		}
	}
	r.mu.Unlock()
	errs := r.each(ctx, p.Actions, func(ctx context.Context, a Action) error {
		f := a.Fault
		f.Lease = fault.Duration(r.opts.Lease)
		return r.api.inject(ctx, a.Gateway, f)
	})
	at := r.since()
	r.mu.Lock()
	r.steps[i].Done = at
	if errs != nil {
		r.steps[i].Error = errs.Error()
	}
	r.mu.Unlock()
	fmt.Fprintf(r.opts.Progress, "%7s  %s %s: %s\n", at.Round(100*time.Millisecond), p.Step.Kind, p.Step.Name, p.Touches)
	r.opts.Logger.Info("drill step", "step", p.Step.Name, "kind", p.Step.Kind, "at", at, "err", errs)
	if errs != nil {
		fmt.Fprintf(r.opts.Progress, "         error: %v\n", errs)
	}
}

func (r *run) restore(ctx context.Context, i int) {
	r.changing.Lock()
	defer r.changing.Unlock()
	target := slices.IndexFunc(r.plans, func(p StepPlan) bool { return p.Step.Name == r.plans[i].Step.Restores })
	errs := r.undoStep(ctx, target)
	at := r.since()
	r.mu.Lock()
	r.steps[i].Done = at
	if errs != nil {
		r.steps[i].Error = errs.Error()
	}
	r.mu.Unlock()
	fmt.Fprintf(r.opts.Progress, "%7s  restore %s: %s\n", at.Round(100*time.Millisecond), r.plans[i].Step.Name, r.plans[i].Touches)
	if errs != nil {
		fmt.Fprintf(r.opts.Progress, "         error: %v\n", errs)
	}
}

// undoStep undoes the faults of plan i if they are in place.
func (r *run) undoStep(ctx context.Context, i int) error {
	r.mu.Lock()
	if !r.active[i] {
		r.mu.Unlock()
		return nil
	}
	delete(r.active, i)
	r.mu.Unlock()
	p := r.plans[i]
	err := r.each(ctx, p.Actions, func(ctx context.Context, a Action) error {
		return r.api.undo(ctx, a.Gateway, a.Fault.ID)
	})
	at := r.since()
	r.mu.Lock()
	r.steps[i].Undone = at
	for _, a := range p.Actions {
		if k := a.Cluster + "/" + a.Gateway.Name; r.downGW[k] > 0 && (holdsDown(a.Fault.Kind)) {
			r.downGW[k]--
		}
	}
	r.mu.Unlock()
	return err
}

// undoAll undoes every fault in place at once, with its own deadline so
// that it runs also when the drill's context has ended.
func (r *run) undoAll(why string) {
	r.changing.Lock()
	defer r.changing.Unlock()
	r.mu.Lock()
	var idx []int
	for i := range r.active {
		idx = append(idx, i)
	}
	r.mu.Unlock()
	if len(idx) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(idx))
	for k, i := range idx {
		wg.Add(1)
		go func() { defer wg.Done(); errs[k] = r.undoStep(ctx, i) }()
	}
	wg.Wait()
	err := errors.Join(errs...)
	fmt.Fprintf(r.opts.Progress, "%7s  undo every fault (%s)\n", r.since().Round(100*time.Millisecond), why)
	if err != nil {
		fmt.Fprintf(r.opts.Progress, "         error: %v (the gateways undo what is left when its lease of %s runs out)\n", err, r.opts.Lease)
	}
	r.opts.Logger.Info("drill: every fault undone", "why", why, "err", err)
}

// each runs fn for every action at once and joins the errors.
func (r *run) each(ctx context.Context, as []Action, fn func(context.Context, Action) error) error {
	errs := make([]error, len(as))
	var wg sync.WaitGroup
	for k, a := range as {
		wg.Add(1)
		go func() { defer wg.Done(); errs[k] = fn(ctx, a) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// renewLeases renews every fault in place each third of the lease.
func (r *run) renewLeases(ctx context.Context) {
	t := time.NewTicker(r.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.changing.Lock()
		r.mu.Lock()
		var as []Action
		for i := range r.active {
			as = append(as, r.plans[i].Actions...)
		}
		r.mu.Unlock()
		err := r.each(ctx, as, func(ctx context.Context, a Action) error {
			f := a.Fault
			f.Lease = fault.Duration(r.opts.Lease)
			return r.api.inject(ctx, a.Gateway, f)
		})
		r.changing.Unlock()
		if err != nil && ctx.Err() == nil {
			r.opts.Logger.Warn("drill: renew fault leases", "err", err)
		}
	}
}

// stop aborts the drill once, from a goroutine of its own: every fault
// is undone before the timeline and the traffic learn of it, and no step
// starts after.
func (r *run) stop(condition, reason string) {
	r.stopping.Add(1)
	go func() {
		defer r.stopping.Done()
		r.abortOne.Do(func() {
			at := r.since()
			r.mu.Lock()
			r.abort = &Abort{At: at, Condition: condition, Reason: reason}
			r.mu.Unlock()
			fmt.Fprintf(r.opts.Progress, "%7s  STOP %s: %s\n", at.Round(100*time.Millisecond), condition, reason)
			r.undoAll("stop condition " + condition)
			close(r.abortCh)
		})
	}()
}

// check looks at each sample as it comes: a success served where one of
// its classes may not go is a violation.
func (r *run) check(s Sample) {
	if s.Outcome != OK || s.Region == "" {
		return
	}
	var vs []Violation
	for _, c := range r.classes[s.Traffic] {
		if !slices.Contains(c.Regions, s.Region) {
			vs = append(vs, Violation{At: s.Start, Traffic: r.d.Traffic[s.Traffic].Name, Class: c.Name, Region: s.Region, Cluster: s.Cluster, Source: s.Reporter})
		}
	}
	for _, x := range r.d.Expect.Residency {
		if slices.Contains(x.NeverReaches, s.Region) && slices.ContainsFunc(r.classes[s.Traffic], func(c ClassInfo) bool { return c.Name == x.Class }) &&
			!slices.ContainsFunc(vs, func(v Violation) bool { return v.Class == x.Class }) {
			vs = append(vs, Violation{At: s.Start, Traffic: r.d.Traffic[s.Traffic].Name, Class: x.Class, Region: s.Region, Cluster: s.Cluster, Source: s.Reporter})
		}
	}
	if len(vs) == 0 {
		return
	}
	r.mu.Lock()
	r.vios = append(r.vios, vs...)
	r.mu.Unlock()
	if r.d.Stop.AnyResidencyViolation {
		v := vs[0]
		r.stop("anyResidencyViolation", fmt.Sprintf("traffic %s of class %s served in region %s by %s", v.Traffic, v.Class, v.Region, v.Cluster))
	}
}

// guard watches the error rate and the gateways' readiness.
func (r *run) guard(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var over int // consecutive seconds above the error rate
	judged := 0  // seconds whose error rate has been looked at
	notReady := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.abortCh:
			return
		case <-tick.C:
		}
		now := r.since()
		if s := r.d.Stop.ErrorRateAbove; s != nil {
			// A second is judged once its requests have all ended.
			for ; time.Duration(judged+1)*time.Second+r.opts.RequestTimeout <= now; judged++ {
				rate, any := r.rec.errorRate(judged)
				if any && rate > s.Percent {
					over++
				} else {
					over = 0
				}
				if time.Duration(over)*time.Second >= s.For {
					r.stop("errorRateAbove", fmt.Sprintf("error rate above %s%% for %s (%.1f%% in second %d)", fmtFloat(s.Percent), s.For, rate, judged))
					return
				}
			}
		}
		if z := r.d.Stop.GatewayNotReadyFor; z > 0 {
			r.checkReady(ctx, notReady, z)
		}
	}
}

func (r *run) checkReady(ctx context.Context, since map[string]time.Time, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	type res struct {
		key, why string
		ok       bool
	}
	var gws []res
	var mu sync.Mutex
	var wg sync.WaitGroup
	for ci := range r.f.Clusters {
		for gi := range r.f.Clusters[ci].Gateways {
			c, g := &r.f.Clusters[ci], &r.f.Clusters[ci].Gateways[gi]
			key := c.Name + "/" + g.Name
			if r.isDown(c.Name, g.Name) {
				delete(since, key)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, why := r.api.ready(ctx, g)
				mu.Lock()
				gws = append(gws, res{key, why, ok})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	now := time.Now()
	sort.Slice(gws, func(i, j int) bool { return gws[i].key < gws[j].key })
	for _, g := range gws {
		if g.ok {
			delete(since, g.key)
			continue
		}
		t, ok := since[g.key]
		if !ok {
			since[g.key] = now
			continue
		}
		if now.Sub(t) >= limit {
			r.stop("gatewayNotReadyFor", fmt.Sprintf("gateway %s not ready for %s: %s", g.key, limit, firstLine([]byte(g.why))))
			return
		}
	}
}

// result assembles and judges what the run measured.
func (r *run) result(ran time.Duration) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{APIVersion: ResultVersion, Drill: r.d.Name, Description: r.d.Description, File: r.opts.File,
		Target: r.opts.Target, Started: r.begin.UTC(), Planned: r.d.Duration, Ran: ran, Aborted: r.abort,
		Clusters: r.f.Infos(), Steps: slices.Clone(r.steps), Violations: slices.Clone(r.vios)}
	n := int((ran + time.Second - 1) / time.Second)
	for i, t := range r.d.Traffic {
		tot, secs := r.rec.export(i, n)
		res.Traffic = append(res.Traffic, TrafficResult{Name: t.Name, Service: t.To.String(), From: t.From,
			Protocol: t.Protocol, Rate: t.Rate, Classes: r.classes[i], Totals: tot, Failures: r.rec.failures(i), Seconds: secs})
	}
	judge(r.d, r.plans, res, r.rec)
	return res
}

// classesOf is used by the dry run: the classes a traffic entry carries
// from one cluster.
func classesOf(w route.WhatIf, t *Traffic, from string) ([]string, *route.Explanation, error) {
	ex, err := w.Explain(explainQuery(t, from))
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, c := range ex.Classes {
		names = append(names, c.Name)
	}
	return names, ex, nil
}
