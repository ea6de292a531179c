package route

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// Self is the gateway a plan is made for.
type Self struct {
	Cluster, Region, Zone string
}

// LocalView is what the gateway knows of the target service in its own
// cluster.
type LocalView struct {
	Exists  bool              // the cluster runs the service
	HasPort bool              // ... with the target port
	Healthy bool              // worth trying (the gateway always tries; its dial decides)
	Labels  map[string]string // its labels
}

// FlowIn is what the outbound gateway knows of a flow besides its target.
type FlowIn struct {
	Entry     string      // connect, http, import or passthrough
	Headers   http.Header // the request headers; nil for L4 (import and passthrough ports, no parsing)
	Namespace string      // the calling workload's namespace, "" when unknown
	// Unreadable says the gateway cannot read the flow's bytes (TLS inside
	// CONNECT, the passthrough port, a tcp port): the flow carries every
	// residency class that matches headers, unless the class says
	// unreadable: allow (sovereignty.Flow.Unreadable).
	Unreadable bool
	// Service is the target's classes by the policy's services matchers
	// (ServiceClasses), as the gateway keeps them per service while its
	// catalog and policy stay the same. Zero, or from another engine:
	// NewPlan computes them.
	Service sovereignty.ServiceClasses
	// Access is the routing state's export and import records; nil: every
	// cluster that runs the service may serve it, to every cluster.
	Access *AccessTable
}

// Planned is one cluster that exports the target, with the policy's say.
type Planned struct {
	Cand     Candidate
	Routable bool // gossip says its gateway is alive and it has a healthy endpoint (for the local cluster: localView.healthy)
	Decision sovereignty.Decision
}

// Plan is where a flow may go: every exporter in the order the
// gateway would try it, each with the residency decision, and the allowed
// routable ones, which are the only ones ever dialled.
type Plan struct {
	Target     wire.Target
	Known      bool
	Source     sovereignty.Flow // the flow as classified: Labels nil, Service the union of every cluster's view
	Classes    sovereignty.Classes
	Considered []Planned
	Allowed    []Candidate
	// Closed says why the routing state's export or import records left
	// remote clusters out of the plan ("" when they left none out).
	Closed string
}

// Locality ranks of candidates. Clusters named by the service's failover
// priority take rankPriority, rankPriority+1, ... in the order listed;
// every other remote cluster takes the rank after the last of them.
const (
	rankLocal = iota
	rankZone
	rankRegion
	rankPriority
)

// NewPlan orders the clusters that export t and asks the policy about
// each. The order is by rank: the local cluster, then remote clusters in
// the same zone, in the same region, then those prio names (the failover
// priority of the service from the routing state, best first), then the
// rest; each rank in catalog order. Locality comes first: a cluster of
// the local zone or region keeps its locality rank whether or not prio
// names it, and prio orders only the clusters beyond the local region.
// prio never adds or removes a candidate: an unlisted cluster still comes
// after the listed ones, and a listed cluster that does not export t, or
// that the policy forbids, is not a candidate. A flow is classified by
// the union of the labels every cluster gives the service, so a cluster
// that forgot a label cannot make a flow unclassified.
func NewPlan(self Self, local LocalView, snap *catalog.Snapshot, eng *sovereignty.Engine, t wire.Target, in FlowIn, prio []string) *Plan {
	p := &Plan{Target: t, Known: local.Exists || snap.Known(t.Namespace, t.Name)}
	svc := in.Service
	if !svc.For(eng) {
		svc = ServiceClasses(eng, local, snap, t)
	}
	p.Source = sovereignty.Flow{Namespace: t.Namespace, Name: t.Name, SourceCluster: self.Cluster, SourceRegion: self.Region,
		SourceNamespace: in.Namespace, Headers: in.Headers, Unreadable: in.Unreadable, Service: svc}
	p.Classes = eng.Classify(&p.Source)
	if local.Exists && local.HasPort {
		p.Considered = append(p.Considered, Planned{Cand: Candidate{Cluster: self.Cluster, Region: self.Region, Local: true, Rank: rankLocal}, Routable: local.Healthy})
	}
	var remote, closed []*catalog.ClusterView
	for _, c := range snap.Clusters {
		if c.Node == snap.Local || c.Cluster == self.Cluster || !Serves(c, t) {
			continue // our own cluster is served locally
		}
		if !in.Access.MayImport(t.Namespace, t.Name, self.Cluster) || !in.Access.MayExport(t.Namespace, t.Name, c.Cluster, t.Port) {
			closed = append(closed, c)
			continue
		}
		remote = append(remote, c)
	}
	if len(closed) > 0 {
		if !in.Access.MayImport(t.Namespace, t.Name, self.Cluster) {
			p.Closed = fmt.Sprintf("the routing state's import record for %s/%s does not name cluster %s", t.Namespace, t.Name, self.Cluster)
		} else {
			var names []string
			for _, c := range closed {
				names = append(names, c.Cluster)
			}
			p.Closed = fmt.Sprintf("the routing state's export record for %s/%s (port %d) does not name cluster%s %s", t.Namespace, t.Name, t.Port,
				plural(len(names)), strings.Join(names, ", "))
		}
	}
	rank := func(c *catalog.ClusterView) int {
		switch {
		case self.Zone != "" && c.Zone == self.Zone:
			return rankZone
		case c.Region == self.Region:
			return rankRegion
		}
		if i := slices.Index(prio, c.Cluster); i >= 0 {
			return rankPriority + i
		}
		return rankPriority + len(prio)
	}
	sort.SliceStable(remote, func(i, j int) bool { return rank(remote[i]) < rank(remote[j]) })
	for _, c := range remote {
		s, _ := c.Service(t.Namespace, t.Name)
		p.Considered = append(p.Considered, Planned{Cand: Candidate{Cluster: c.Cluster, Region: c.Region, Addr: c.Gateway, Rank: rank(c), Healthy: s.Healthy},
			Routable: routable(c, t)})
	}
	for i := range p.Considered {
		pl := &p.Considered[i]
		pl.Decision = eng.DecideClasses(p.Classes, self.Region, sovereignty.Candidate{Cluster: pl.Cand.Cluster, Region: pl.Cand.Region})
		if pl.Decision.Allow && pl.Routable {
			p.Allowed = append(p.Allowed, pl.Cand)
		}
	}
	return p
}

// ServiceClasses returns the classes the policy's services matchers put t
// in, by the labels of every cluster's view of it (local's and every
// one in snap) and by its name alone: a flow carries the classes of every
// cluster's view of the service, so a cluster that forgot a label cannot
// make a flow unclassified. NewPlan uses it unless FlowIn.Service holds
// it already.
func ServiceClasses(eng *sovereignty.Engine, local LocalView, snap *catalog.Snapshot, t wire.Target) sovereignty.ServiceClasses {
	svc := eng.ServiceClasses(t.Namespace, t.Name, nil)
	if local.Exists {
		svc = svc.Union(eng.ServiceClasses(t.Namespace, t.Name, local.Labels))
	}
	for _, c := range snap.Clusters {
		if s, ok := c.Service(t.Namespace, t.Name); ok {
			svc = svc.Union(eng.ServiceClasses(t.Namespace, t.Name, s.Labels))
		}
	}
	return svc
}

// routable reports whether gossip says c can take t now.
func routable(c *catalog.ClusterView, t wire.Target) bool {
	if !c.Reachable {
		return false
	}
	s, ok := c.Service(t.Namespace, t.Name)
	return ok && s.HasPort(t.Port) && s.Healthy > 0
}

// Denied returns the exporters the policy forbids, in order.
func (p *Plan) Denied() []Planned {
	var out []Planned
	for _, pl := range p.Considered {
		if !pl.Decision.Allow {
			out = append(out, pl)
		}
	}
	return out
}

// Down returns the exporters the policy allows that cannot take the flow now.
func (p *Plan) Down() []Planned {
	var out []Planned
	for _, pl := range p.Considered {
		if pl.Decision.Allow && !pl.Routable {
			out = append(out, pl)
		}
	}
	return out
}

// Refusal says why the flow cannot go anywhere, or nil when some allowed
// cluster can take it: 404 when no cluster exports the service, 403 when
// the policy allows none of the clusters that do, 503 when it allows some
// but none of them is up.
func (p *Plan) Refusal(eng *sovereignty.Engine) *NoRouteError {
	if len(p.Allowed) > 0 {
		return nil
	}
	nre := &NoRouteError{Target: p.Target, Known: p.Known}
	if !p.Known {
		return nre
	}
	if len(p.Considered) == 0 && p.Closed != "" {
		nre.Access = p.Closed
		return nre
	}
	denied, down := p.Denied(), p.Down()
	switch {
	case len(down) > 0:
		nre.Residency = ResidencyUnavailable
		var names []string
		for _, d := range down {
			names = append(names, d.Cand.Cluster)
		}
		nre.Reason = fmt.Sprintf("allowed cluster%s %s %s not reachable or healthy", plural(len(names)), strings.Join(names, ", "), isAre(len(names)))
		if len(denied) > 0 {
			d := denied[0]
			nre.Reason += fmt.Sprintf("; refusing to send the flow elsewhere: %s", d.Decision.Describe(p.Source.SourceRegion, SovCandidate(d.Cand)))
			nre.Rule, nre.Class = d.Decision.Rule.ID, d.Decision.Rule.Class
		}
	case len(denied) > 0:
		d := denied[0]
		nre.Residency = ResidencyForbidden
		nre.Reason = d.Decision.Describe(p.Source.SourceRegion, SovCandidate(d.Cand))
		nre.Rule, nre.Class = d.Decision.Rule.ID, d.Decision.Rule.Class
		nre.BadHeader = d.Decision.Reason == sovereignty.ReasonAmbiguousHeader || d.Decision.Reason == sovereignty.ReasonUnknownHeaderValue
	}
	return nre
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// Facts are what the outbound gateway tells the inbound one about the
// flow: its classes, the regions they allow, and the classifying Facts
// the inbound gateway cannot see for itself.
func (p *Plan) Facts(eng *sovereignty.Engine, version uint64) wire.Facts {
	f := wire.Facts{Classes: eng.ClassNames(p.Classes), Namespace: p.Source.SourceNamespace, Policy: version}
	f.Regions, f.Restricted = eng.AllowedRegions(p.Classes)
	for _, name := range eng.HeaderNames() {
		if vs := p.Source.Headers[name]; len(vs) > 0 {
			if f.Headers == nil {
				f.Headers = map[string][]string{}
			}
			f.Headers[name] = vs
		}
	}
	return f
}

func SovCandidate(c Candidate) sovereignty.Candidate {
	return sovereignty.Candidate{Cluster: c.Cluster, Region: c.Region}
}

// NoRouteError says why a connection to a target could not be made. It
// lists every candidate tried and why it failed.
type NoRouteError struct {
	Target wire.Target
	// Known is false when no cluster, reachable or not, exports the service.
	Known   bool
	Reasons []string
	// Residency is set when the residency policy shaped the outcome:
	// ResidencyForbidden when it allows none of the clusters that export
	// the service, ResidencyUnavailable when it allows some but none of
	// them could take the flow (it is then never sent elsewhere).
	Residency string
	// Reason, Rule and Class say which policy rule decided, for people
	// and the audit trail.
	Reason, Rule, Class string
	// BadHeader is set when a classifying header was ambiguous or carried
	// a value the policy does not name: the request is at fault (400).
	BadHeader bool
	// Access is set when the routing state's export or import records
	// left every cluster that runs the service out (403).
	Access string
}

// Residency outcomes of a NoRouteError.
const (
	ResidencyForbidden   = "forbidden"
	ResidencyUnavailable = "unavailable"
)

func (e *NoRouteError) Error() string {
	switch {
	case !e.Known:
		return fmt.Sprintf("no cluster exports %s", e.Target)
	case e.Access != "":
		return fmt.Sprintf("access: %s refused: %s", e.Target, e.Access)
	case e.Residency == ResidencyForbidden:
		return fmt.Sprintf("residency: %s refused: %s", e.Target, e.Reason)
	case e.Residency == ResidencyUnavailable:
		msg := fmt.Sprintf("residency: no allowed cluster can take %s: %s", e.Target, e.Reason)
		if len(e.Reasons) > 0 {
			msg += "; tried: " + strings.Join(e.Reasons, "; ")
		}
		return msg
	case len(e.Reasons) == 0:
		return fmt.Sprintf("no reachable cluster has a healthy endpoint of %s", e.Target)
	}
	return fmt.Sprintf("no candidate for %s answered: %s", e.Target, strings.Join(e.Reasons, "; "))
}

// Status is the HTTP status a proxy client gets for e: 404 when no
// cluster exports the service, 400 when a classifying header was
// ambiguous or unknown, 403 when residency or the routing state's export
// and import records allow none, else 503.
func (e *NoRouteError) Status() int {
	switch {
	case !e.Known:
		return 404
	case e.BadHeader:
		return 400
	case e.Residency == ResidencyForbidden, e.Access != "":
		return 403
	}
	return 503
}

// Candidate is one place a connection to a target can go.
type Candidate struct {
	Cluster string
	Region  string
	Local   bool   // an endpoint in our own cluster, dialled directly
	Addr    string // remote gateway data address
	Rank    int    // locality rank (plan.go); the selector balances within one
	Healthy int    // healthy endpoints of the service behind a remote gateway
}

// Serves reports whether c exports t's service on t's port (binary search
// in the view's sorted services: this runs for every new connection).
func Serves(c *catalog.ClusterView, t wire.Target) bool {
	s, ok := c.Service(t.Namespace, t.Name)
	return ok && s.HasPort(t.Port)
}
