package gateway

import (
	"fmt"
	"slices"

	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

// peerRestriction is the rule cited when the outbound gateway's claimed
// region set excludes this cluster or the source.
var peerRestriction = &sovereignty.Rule{ID: "peer-restriction", Path: "flow facts", At: "outbound gateway"}

// inboundVerdict is the inbound gateway's residency decision for a stream.
type inboundVerdict struct {
	decision sovereignty.Decision
	classes  []string
	reason   string // for people; "" when allowed
}

// decideInbound checks a stream again at the receiving end. The source is
// the peer's verified certificate, the destination this cluster, the
// service labels this cluster's own. The peer's facts can only narrow: the
// stream must be allowed both on what this gateway sees by itself and with
// the classes the peer claims added, and a claimed region set must hold
// both ends. The facts' namespace, headers and classes are claims to the
// engine too (sovereignty.Engine.DecideClasses), so under "default: deny"
// none of them turns a refusal into an allow. svc is the service's
// classes by labels (Engine.ServiceClasses, as the gateway keeps them);
// zero, the engine matches labels itself.
func decideInbound(eng *sovereignty.Engine, self sovereignty.Candidate, t wire.Target, labels map[string]string, svc sovereignty.ServiceClasses,
	peer identity.ID, facts wire.Facts) inboundVerdict {
	f := sovereignty.Flow{Namespace: t.Namespace, Name: t.Name, Labels: labels, SourceCluster: peer.Cluster, SourceRegion: peer.Region,
		SourceNamespace: facts.Namespace, Headers: facts.Header(), Service: svc}
	own := eng.Classify(&f)
	claimed, _ := eng.ClassesNamed(facts.Classes) // unknown names are covered by the region claim
	all := own.Union(claimed)
	v := inboundVerdict{decision: eng.DecideClasses(own, peer.Region, self), classes: eng.ClassNames(all)}
	if v.decision.Allow {
		v.decision = eng.DecideClasses(all, peer.Region, self)
	}
	if !v.decision.Allow {
		v.reason = v.decision.Describe(peer.Region, self)
		return v
	}
	if facts.Restricted {
		for _, side := range []struct{ what, region string }{{"the source region", peer.Region}, {self.Cluster, self.Region}} {
			if !slices.Contains(facts.Regions, side.region) {
				v.decision = sovereignty.Decision{Reason: sovereignty.ReasonDestinationRegion, Rule: peerRestriction}
				if side.what == "the source region" {
					v.decision.Reason = sovereignty.ReasonSourceRegion
				}
				v.reason = fmt.Sprintf("the outbound gateway restricted the flow (classes %v) to regions %v; %s is in %s",
					facts.Classes, facts.Regions, side.what, side.region)
				return v
			}
		}
	}
	return v
}
