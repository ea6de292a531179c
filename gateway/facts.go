package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"

	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

// alpnFlow is the ALPN protocol with which two gateways agree that the
// outbound one sends a flow-facts line right after the mTLS handshake,
// before the inbound one answers. A peer that does not offer it sends no
// facts, and the inbound gateway then classifies only by what it sees.
const alpnFlow = "strait-flow/1"

// maxFactsLine bounds the facts line.
const maxFactsLine = 4096

// flowFacts is the one JSON line the outbound gateway sends: what it used
// to classify the flow. The inbound gateway can only add restrictions with
// it: claimed classes join the classes it finds itself, and a claimed
// region set must contain both ends. Nothing in it can widen access.
type flowFacts struct {
	// Classes the outbound gateway found for the flow.
	Classes []string `json:"classes,omitempty"`
	// Regions the flow may touch (the intersection of its classes'),
	// meaningful when Restricted.
	Regions    []string `json:"regions,omitempty"`
	Restricted bool     `json:"restricted,omitempty"`
	// Namespace of the calling workload, as the outbound gateway knows it.
	Namespace string `json:"namespace,omitempty"`
	// Headers the outbound gateway's policy classifies by, as the client
	// sent them. Empty for L4 flows.
	Headers map[string][]string `json:"headers,omitempty"`
	// Policy is the outbound gateway's policy version, for the audit trail.
	Policy uint64 `json:"policy,omitempty"`
}

var errBadFacts = errors.New("bad flow facts")

func encodeFacts(f flowFacts) ([]byte, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode flow facts: %w", err)
	}
	if len(b)+1 > maxFactsLine {
		return nil, fmt.Errorf("encode flow facts: %d bytes exceeds %d", len(b)+1, maxFactsLine)
	}
	return append(b, '\n'), nil
}

// readFacts reads the facts line one byte at a time, so nothing after it
// is consumed, and validates it.
func readFacts(r io.Reader) (flowFacts, error) {
	var buf [maxFactsLine]byte
	for n := 0; n < len(buf); n++ {
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			return flowFacts{}, fmt.Errorf("%w: %v", errBadFacts, err)
		}
		if buf[n] == '\n' {
			return decodeFacts(buf[:n])
		}
	}
	return flowFacts{}, fmt.Errorf("%w: longer than %d bytes", errBadFacts, maxFactsLine)
}

// decodeFacts parses and bounds one facts line.
func decodeFacts(b []byte) (flowFacts, error) {
	var f flowFacts
	if err := json.Unmarshal(b, &f); err != nil {
		return flowFacts{}, fmt.Errorf("%w: %v", errBadFacts, err)
	}
	if len(f.Classes) > sovereignty.MaxClasses || len(f.Regions) > sovereignty.MaxRegions || len(f.Headers) > 32 {
		return flowFacts{}, fmt.Errorf("%w: too many classes, regions or headers", errBadFacts)
	}
	for _, s := range append(append([]string{}, f.Classes...), f.Regions...) {
		if !isLabel(s) {
			return flowFacts{}, fmt.Errorf("%w: %q is not a class or region name", errBadFacts, s)
		}
	}
	if f.Namespace != "" && !isLabel(f.Namespace) {
		return flowFacts{}, fmt.Errorf("%w: namespace %q", errBadFacts, f.Namespace)
	}
	for k, vs := range f.Headers {
		if len(vs) == 0 || len(vs) > 8 || k == "" {
			return flowFacts{}, fmt.Errorf("%w: header %q", errBadFacts, k)
		}
	}
	return f, nil
}

// Header returns the facts' headers as an http.Header with canonical keys.
func (f flowFacts) Header() http.Header {
	if len(f.Headers) == 0 {
		return nil
	}
	h := make(http.Header, len(f.Headers))
	for k, vs := range f.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		h[ck] = append(h[ck], vs...)
	}
	return h
}

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
// the classes the peer claims added (under "default: deny" a claimed class
// could otherwise turn a refusal into an allow), and a claimed region set
// must hold both ends.
func decideInbound(eng *sovereignty.Engine, self sovereignty.Candidate, t Target, labels map[string]string, peer identity.ID, facts flowFacts) inboundVerdict {
	f := sovereignty.Flow{Namespace: t.Namespace, Name: t.Name, Labels: labels, SourceCluster: peer.Cluster, SourceRegion: peer.Region,
		SourceNamespace: facts.Namespace, Headers: facts.Header()}
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
