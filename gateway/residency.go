package gateway

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// ResidencyConfig configures residency enforcement.
type ResidencyConfig struct {
	// Policy is the residency policy file (docs/residency.md). It is
	// validated at start: an invalid policy stops the gateway from
	// starting. It is read again on SIGHUP and when the file changes; an
	// invalid update is refused and the last good policy stays. Empty:
	// no residency policy, every flow is allowed.
	Policy string `mapstructure:"policy"`
	// StatePolicy names the policy record in the routing state that the
	// gateway enforces when the routing state is enabled (written with
	// 'strait policy apply'). Until that record exists, Policy (or no
	// policy) is in force. Default "default".
	StatePolicy string `mapstructure:"statePolicy"`
	// Audit says where audit records go.
	Audit sovereignty.AuditConfig `mapstructure:"audit"`
}

// residency is a gateway's residency enforcement: the policy source, the
// audit trail, and what has been audited so far.
type residency struct {
	g      *Gateway
	src    PolicySource
	state  *statePolicySource // set when the policy comes from the routing state
	file   *FilePolicySource  // set when the gateway made the source
	origin string
	audit  *sovereignty.Auditor

	// Owned by the watch loop (and Start before it runs).
	applied    uint64
	appliedEng *sovereignty.Engine // the policy of version applied
	rejSeq     uint64

	mu   sync.Mutex
	seen map[string]struct{} // filtered candidates already audited under the current version
}

// maxSeen bounds the memory used to audit each filtered route once.
const maxSeen = 4096

// startResidency sets up the policy source and the audit trail. It runs
// before any listener opens, so a gateway never serves without a policy it
// validated.
func (g *Gateway) startResidency(src PolicySource) error {
	r := &residency{g: g, src: src, seen: map[string]struct{}{}}
	switch {
	case src != nil:
	case g.cfg.Residency.Policy != "":
		fs, err := NewFilePolicySource(g.cfg.Residency.Policy, g.log)
		if err != nil {
			return err
		}
		r.src, r.file = fs, fs
	default:
		r.src = NewMemoryPolicySource(sovereignty.AllowAll())
		r.origin = "none"
	}
	if r.origin == "" {
		r.origin = "external"
		if o, ok := r.src.(PolicyOrigin); ok {
			r.origin = o.Origin()
		}
	}
	a, err := sovereignty.NewAuditor(sovereignty.AuditorOptions{Config: g.cfg.Residency.Audit, Cluster: g.cfg.Cluster, Region: g.cfg.Region,
		Registerer: g.reg, Logger: g.log, Tap: g.refusalFeed.tap})
	if err != nil {
		return fmt.Errorf("residency audit: %w", err)
	}
	r.audit = a
	g.serverTLS.NextProtos = []string{wire.ALPNFlow}
	if g.cfg.Tunnels.Enabled {
		g.serverTLS.NextProtos = []string{wire.ALPNTunnel, wire.ALPNFlow}
	}
	g.res = r
	r.sync()
	return nil
}

// run follows the policy source until the gateway stops.
func (r *residency) run(ctx context.Context, wg *sync.WaitGroup) {
	if r.file != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.file.Watch(ctx, 200*time.Millisecond); err != nil {
				r.g.log.Warn("residency policy file not watched; SIGHUP still reloads it", "err", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.src.Changes():
				r.sync()
			}
		}
	}()
}

// sync audits what changed at the source since the last call, in the
// order it happened: a refused update made while the policy this gateway
// last applied was in force is recorded before a newer policy.
func (r *residency) sync() {
	eng, version := r.src.Current()
	var rejErr error
	var rejAt uint64
	if rj, ok := r.src.(PolicyRejections); ok {
		var seq uint64
		if seq, rejAt, rejErr = rj.LastRejection(); seq > r.rejSeq && rejErr != nil {
			r.rejSeq = seq
		} else {
			rejErr = nil
		}
	}
	if rejErr != nil && rejAt <= r.applied && version != r.applied {
		r.audit.PolicyRejected(r.info(r.appliedEng, r.applied), r.origin, rejErr)
		rejErr = nil
	}
	if eng != nil && version != r.applied {
		prev := r.applied
		r.applied, r.appliedEng = version, eng
		r.mu.Lock()
		clear(r.seen)
		r.mu.Unlock()
		info := r.info(eng, version)
		info.Source, info.Previous = r.origin, prev
		r.audit.PolicyApplied(info)
		r.g.log.Info("residency policy in force", "policy", eng.Name(), "version", version, "digest", eng.Digest(), "source", r.origin)
		if r.g.catalog != nil {
			// Region-only services may now have another audience.
			r.g.catalog.SetScope(r.g.CatalogScope())
		}
	}
	if rejErr != nil {
		r.audit.PolicyRejected(r.info(eng, version), r.origin, rejErr)
	}
}

func (r *residency) info(eng *sovereignty.Engine, version uint64) sovereignty.PolicyInfo {
	if eng == nil {
		return sovereignty.PolicyInfo{}
	}
	return sovereignty.PolicyInfo{Name: eng.Name(), Version: version, Digest: eng.Digest()}
}

func (r *residency) current() (*sovereignty.Engine, uint64) { return r.src.Current() }

// useState makes the routing state the policy source, with the current
// source as fallback until the state holds a policy.
func (r *residency) useState(store *state.Store, name string) {
	if name == "" {
		name = "default"
	}
	r.state = newStatePolicySource(store, name, r.src)
	r.src = r.state
	r.origin = r.state.Origin()
	r.sync()
}

func (r *residency) close() {
	if r.state != nil {
		r.state.close()
	}
	if err := r.audit.Close(); err != nil {
		r.g.log.Warn("close residency audit", "err", err)
	}
}

// countPlan counts every decision the plan acted on.
func (r *residency) countPlan(p *route.Plan) {
	for _, pl := range p.Considered {
		r.audit.Count(pl.Decision)
	}
}

// flowInfo renders the flow of a plan for an audit record.
func flowInfo(p *route.Plan, eng *sovereignty.Engine, in route.FlowIn) *sovereignty.FlowInfo {
	fi := &sovereignty.FlowInfo{Service: p.Target.Namespace + "/" + p.Target.Name, Port: p.Target.Port, Protocol: "tcp",
		SourceCluster: p.Source.SourceCluster, SourceRegion: p.Source.SourceRegion, SourceNamespace: in.Namespace,
		Classes: eng.ClassNames(p.Classes), Unreadable: in.Unreadable}
	if in.Headers != nil {
		fi.Protocol = "http"
		for _, name := range eng.HeaderNames() {
			if v := in.Headers.Get(name); v != "" {
				if fi.Headers == nil {
					fi.Headers = map[string]string{}
				}
				fi.Headers[name] = v
			}
		}
	}
	return fi
}

func candidateInfos(p *route.Plan) []sovereignty.CandidateInfo {
	out := make([]sovereignty.CandidateInfo, 0, len(p.Considered))
	for _, pl := range p.Considered {
		ci := sovereignty.CandidateInfo{Cluster: pl.Cand.Cluster, Region: pl.Cand.Region, Decision: "allow", Rule: pl.Decision.Rule.ID}
		switch {
		case !pl.Decision.Allow:
			ci.Decision = "deny"
		case !pl.Routable:
			ci.Decision = "down"
		}
		out = append(out, ci)
	}
	return out
}

// deny audits and counts a refused outbound flow.
func (r *residency) deny(direction string, in route.FlowIn, p *route.Plan, nre *route.NoRouteError, version uint64) {
	eng, _ := r.current()
	status := nre.Status()
	r.audit.Refused(direction, status)
	rec := sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionDeny, Direction: direction, Entry: in.Entry,
		Status: status, Rule: nre.Rule, Class: nre.Class, Reason: nre.Error(), Policy: r.info(eng, version)}
	if eng != nil {
		rec.Flow = flowInfo(p, eng, in)
		rec.Candidates = candidateInfos(p)
		for _, pl := range p.Considered {
			if pl.Decision.Rule.ID == nre.Rule {
				rec.RuleAt = pl.Decision.Rule.Path + " at " + pl.Decision.Rule.At
				break
			}
		}
	}
	r.audit.Write(rec)
	r.g.log.Info("flow refused for residency", "service", p.Target.String(), "status", status, "rule", nre.Rule, "class", nre.Class, "reason", nre.Reason)
}

// filtered audits the candidates the policy removed from a flow that
// still has somewhere to go, once per route and policy version.
func (r *residency) filtered(in route.FlowIn, p *route.Plan, version uint64) {
	denied := p.Denied()
	if len(denied) == 0 {
		return
	}
	eng, _ := r.current()
	for _, d := range denied {
		key := fmt.Sprintf("%s|%s|%s|%s|%v", p.Target, in.Namespace, d.Cand.Cluster, d.Decision.Rule.ID, classKey(eng, p))
		r.mu.Lock()
		_, dup := r.seen[key]
		if !dup {
			if len(r.seen) >= maxSeen {
				clear(r.seen)
			}
			r.seen[key] = struct{}{}
		}
		r.mu.Unlock()
		if dup {
			continue
		}
		r.audit.Write(sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionFiltered, Direction: "outbound", Entry: in.Entry,
			Flow: flowInfo(p, eng, in), Rule: d.Decision.Rule.ID, RuleAt: d.Decision.Rule.Path + " at " + d.Decision.Rule.At, Class: d.Decision.Rule.Class,
			Reason: d.Decision.Describe(p.Source.SourceRegion, route.SovCandidate(d.Cand)), Candidates: candidateInfos(p), Policy: r.info(eng, version)})
	}
}

func classKey(eng *sovereignty.Engine, p *route.Plan) []string {
	names := eng.ClassNames(p.Classes)
	sort.Strings(names)
	return names
}

// ReloadPolicy asks the policy source to read its policy again (SIGHUP).
// A source that cannot reload returns nil.
func (g *Gateway) ReloadPolicy() error {
	if rl, ok := g.res.src.(interface{ Reload() error }); ok {
		return rl.Reload()
	}
	return nil
}

// Policy returns the residency policy in force and its version.
func (g *Gateway) Policy() (*sovereignty.Engine, uint64) { return g.res.current() }

// The compiled policy is the catalog's scope: a class with
// catalog: region-only keeps its services' entries from gateways outside
// its regions.
var _ catalog.Scope = (*sovereignty.Engine)(nil)

// CatalogScope returns the catalog.Scope of the policy in force, which
// follows every policy change. With no policy in force yet it fails
// closed: every service is restricted to no region. residency.sync hands
// it to the catalog again after each policy change, so entries are
// re-evaluated.
func (g *Gateway) CatalogScope() catalog.Scope {
	return catalog.ScopeFunc(func(namespace, name string, labels map[string]string) ([]string, bool) {
		eng, _ := g.res.current()
		if eng == nil {
			return []string{}, true
		}
		return eng.CatalogRegions(namespace, name, labels)
	})
}
