package gateway

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

// selfInfo is the gateway a plan is made for.
type selfInfo struct {
	cluster, region, zone string
}

// localView is what the gateway knows of the target service in its own
// cluster.
type localView struct {
	exists  bool              // the cluster runs the service
	hasPort bool              // ... with the target port
	healthy bool              // worth trying (the gateway always tries; its dial decides)
	labels  map[string]string // its labels
}

// flowIn is what the outbound gateway knows of a flow besides its target.
type flowIn struct {
	entry     string      // connect, http, import or passthrough
	headers   http.Header // the request headers; nil for L4 (import and passthrough ports, no parsing)
	namespace string      // the calling workload's namespace, "" when unknown
}

// planned is one cluster that exports the target, with the policy's say.
type planned struct {
	cand     candidate
	routable bool // gossip says its gateway is alive and it has a healthy endpoint (for the local cluster: localView.healthy)
	decision sovereignty.Decision
}

// routePlan is where a flow may go: every exporter in the order the
// gateway would try it, each with the residency decision, and the allowed
// routable ones, which are the only ones ever dialled.
type routePlan struct {
	target     wire.Target
	known      bool
	source     sovereignty.Flow // the flow as classified, Labels left nil
	classes    sovereignty.Classes
	considered []planned
	allowed    []candidate
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

// planRoute orders the clusters that export t and asks the policy about
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
func planRoute(self selfInfo, local localView, snap *catalog.Snapshot, eng *sovereignty.Engine, t wire.Target, in flowIn, prio []string) *routePlan {
	p := &routePlan{target: t, known: local.exists || snap.Known(t.Namespace, t.Name)}
	p.source = sovereignty.Flow{Namespace: t.Namespace, Name: t.Name, SourceCluster: self.cluster, SourceRegion: self.region,
		SourceNamespace: in.namespace, Headers: in.headers}
	classify := func(labels map[string]string) {
		f := p.source
		f.Labels = labels
		p.classes = p.classes.Union(eng.Classify(&f))
	}
	classify(nil)
	if local.exists {
		classify(local.labels)
		if local.hasPort {
			p.considered = append(p.considered, planned{cand: candidate{cluster: self.cluster, region: self.region, local: true, rank: rankLocal}, routable: local.healthy})
		}
	}
	var remote []*catalog.ClusterView
	for _, c := range snap.Clusters {
		if s, ok := c.Service(t.Namespace, t.Name); ok {
			classify(s.Labels)
		}
		if c.Node == snap.Local || c.Cluster == self.cluster || !serves(c, t) {
			continue // our own cluster is served locally
		}
		remote = append(remote, c)
	}
	rank := func(c *catalog.ClusterView) int {
		switch {
		case self.zone != "" && c.Zone == self.zone:
			return rankZone
		case c.Region == self.region:
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
		p.considered = append(p.considered, planned{cand: candidate{cluster: c.Cluster, region: c.Region, addr: c.Gateway, rank: rank(c), healthy: s.Healthy},
			routable: routable(c, t)})
	}
	for i := range p.considered {
		pl := &p.considered[i]
		pl.decision = eng.DecideClasses(p.classes, self.region, sovereignty.Candidate{Cluster: pl.cand.cluster, Region: pl.cand.region})
		if pl.decision.Allow && pl.routable {
			p.allowed = append(p.allowed, pl.cand)
		}
	}
	return p
}

// routable reports whether gossip says c can take t now.
func routable(c *catalog.ClusterView, t wire.Target) bool {
	if !c.Reachable {
		return false
	}
	s, ok := c.Service(t.Namespace, t.Name)
	return ok && s.HasPort(t.Port) && s.Healthy > 0
}

// denied returns the exporters the policy forbids, in order.
func (p *routePlan) denied() []planned {
	var out []planned
	for _, pl := range p.considered {
		if !pl.decision.Allow {
			out = append(out, pl)
		}
	}
	return out
}

// down returns the exporters the policy allows that cannot take the flow now.
func (p *routePlan) down() []planned {
	var out []planned
	for _, pl := range p.considered {
		if pl.decision.Allow && !pl.routable {
			out = append(out, pl)
		}
	}
	return out
}

// refusal says why the flow cannot go anywhere, or nil when some allowed
// cluster can take it: 404 when no cluster exports the service, 403 when
// the policy allows none of the clusters that do, 503 when it allows some
// but none of them is up.
func (p *routePlan) refusal(eng *sovereignty.Engine) *NoRouteError {
	if len(p.allowed) > 0 {
		return nil
	}
	nre := &NoRouteError{Target: p.target, Known: p.known}
	if !p.known {
		return nre
	}
	denied, down := p.denied(), p.down()
	switch {
	case len(down) > 0:
		nre.Residency = ResidencyUnavailable
		var names []string
		for _, d := range down {
			names = append(names, d.cand.cluster)
		}
		nre.Reason = fmt.Sprintf("allowed cluster%s %s %s not reachable or healthy", plural(len(names)), strings.Join(names, ", "), isAre(len(names)))
		if len(denied) > 0 {
			d := denied[0]
			nre.Reason += fmt.Sprintf("; refusing to send the flow elsewhere: %s", d.decision.Describe(p.source.SourceRegion, sovCand(d.cand)))
			nre.Rule, nre.Class = d.decision.Rule.ID, d.decision.Rule.Class
		}
	case len(denied) > 0:
		d := denied[0]
		nre.Residency = ResidencyForbidden
		nre.Reason = d.decision.Describe(p.source.SourceRegion, sovCand(d.cand))
		nre.Rule, nre.Class = d.decision.Rule.ID, d.decision.Rule.Class
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

// facts are what the outbound gateway tells the inbound one about the
// flow: its classes, the regions they allow, and the classifying facts
// the inbound gateway cannot see for itself.
func (p *routePlan) facts(eng *sovereignty.Engine, version uint64) wire.Facts {
	f := wire.Facts{Classes: eng.ClassNames(p.classes), Namespace: p.source.SourceNamespace, Policy: version}
	f.Regions, f.Restricted = eng.AllowedRegions(p.classes)
	for _, name := range eng.HeaderNames() {
		if vs := p.source.Headers[name]; len(vs) > 0 {
			if f.Headers == nil {
				f.Headers = map[string][]string{}
			}
			f.Headers[name] = vs
		}
	}
	return f
}

func sovCand(c candidate) sovereignty.Candidate {
	return sovereignty.Candidate{Cluster: c.cluster, Region: c.region}
}
