package route

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// The residency tooling (strait policy explain, diff, simulate) answers
// "what would the gateways do" with the gateway's own planner, NewPlan,
// run over a topology instead of a live catalog: the same ordering, the
// same classification, the same engine.

// WhatIf is a residency question about a topology.
type WhatIf struct {
	Policy  *sovereignty.Engine
	Version uint64 // the policy's version, 0 when it comes from a file
	Top     *sovereignty.Topology
	// Fail lists regions or clusters to take down before answering.
	Fail []string
	// Unreadable makes Simulate ask about flows the gateway cannot read
	// (TLS inside CONNECT, the passthrough port, tcp ports): each variant
	// without headers, as an unreadable flow.
	Unreadable bool
}

// failed resolves Fail to cluster names.
func (w WhatIf) failed() (map[string]bool, error) {
	out := map[string]bool{}
	for _, f := range w.Fail {
		hit := false
		for _, c := range w.Top.Clusters {
			if c.Name == f || c.Region == f {
				out[c.Name], hit = true, true
			}
		}
		if !hit {
			return nil, fmt.Errorf("--fail %s: no cluster or region of that name in the topology", f)
		}
	}
	return out, nil
}

// snapshot renders the topology as the catalog of the gateway in cluster
// from, with failed clusters unreachable.
func (w WhatIf) snapshot(from string, failed map[string]bool) *catalog.Snapshot {
	snap := &catalog.Snapshot{Local: from}
	for _, c := range w.Top.Clusters {
		v := &catalog.ClusterView{Entry: catalog.Entry{Node: c.Name, Cluster: c.Name, Region: c.Region, Zone: c.Zone, Gateway: c.Name},
			Reachable: !c.Down && !failed[c.Name], State: "alive"}
		if !v.Reachable {
			v.State = "dead"
		}
		for _, s := range c.Services {
			fs := catalog.Service{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels, Healthy: s.Healthy, Total: s.Healthy}
			for _, p := range s.Ports {
				fs.Ports = append(fs.Ports, catalog.Port{Port: p})
			}
			v.Services = append(v.Services, fs)
		}
		catalog.SortServices(v.Services)
		snap.Clusters = append(snap.Clusters, v)
	}
	sort.SliceStable(snap.Clusters, func(i, j int) bool { return snap.Clusters[i].Cluster < snap.Clusters[j].Cluster })
	return snap
}

// plan runs the gateway's planner for a flow from cluster from.
func (w WhatIf) plan(eng *sovereignty.Engine, from string, failed map[string]bool, t wire.Target, in FlowIn) (*Plan, error) {
	fc, ok := w.Top.Cluster(from)
	if !ok {
		return nil, fmt.Errorf("no cluster %s in the topology", from)
	}
	lv := LocalView{}
	for _, s := range fc.Services {
		if s.Namespace == t.Namespace && s.Name == t.Name {
			lv = LocalView{Exists: true, HasPort: slices.Contains(s.Ports, t.Port), Healthy: s.Healthy > 0 && !fc.Down && !failed[fc.Name], Labels: s.Labels}
		}
	}
	return NewPlan(Self{Cluster: fc.Name, Region: fc.Region, Zone: fc.Zone}, lv, w.snapshot(from, failed), eng, t, in, nil), nil
}

// port picks the service port a question is about: the one given, or the
// lowest port any cluster exports the service on.
func (w WhatIf) port(ns, name string, port int) (int, bool) {
	if port > 0 {
		return port, true
	}
	best := 0
	for _, c := range w.Top.Clusters {
		for _, s := range c.Services {
			if s.Namespace == ns && s.Name == name {
				for _, p := range s.Ports {
					if best == 0 || p < best {
						best = p
					}
				}
			}
		}
	}
	return best, best > 0
}

// Explanation answers strait policy explain.
type Explanation struct {
	Service    string                 `json:"service"`
	From       string                 `json:"from"`
	FromRegion string                 `json:"fromRegion"`
	Traffic    string                 `json:"traffic"` // tcp, unreadable, or the headers; and the namespace given
	Unreadable bool                   `json:"unreadable,omitempty"`
	Policy     sovereignty.PolicyInfo `json:"policy"`
	Classes    []ExplainedClass       `json:"classes"`
	// Regions the flow may touch when Restricted.
	Restricted bool                 `json:"restricted"`
	Regions    []string             `json:"regions,omitempty"`
	Candidates []ExplainedCandidate `json:"candidates"`
	// Status is 200 when the flow goes somewhere, else the refusal status.
	Status  int    `json:"status"`
	Outcome string `json:"outcome"`
}

// ExplainedClass is one class that applies, and why: the matchers that
// matched, and for an unreadable flow one of Kind
// sovereignty.KindUnreadable when the class applies because it matches
// headers.
type ExplainedClass struct {
	Name      string                    `json:"name"`
	Allowed   []string                  `json:"allowed"`
	MatchedBy []sovereignty.MatcherInfo `json:"matchedBy"`
}

// ExplainedCandidate is one cluster that exports the service.
type ExplainedCandidate struct {
	Order    int    `json:"order"` // 1.. in the order traffic would try it; 0 when it never would
	Cluster  string `json:"cluster"`
	Region   string `json:"region"`
	State    string `json:"state"` // local, up, down
	Decision string `json:"decision"`
	Rule     string `json:"rule"`
	Why      string `json:"why"`
}

// ExplainQuery is what strait policy explain asks about.
type ExplainQuery struct {
	Namespace, Name string
	Port            int // 0: the lowest exported port
	From            string
	Headers         http.Header
	SourceNamespace string
	// Unreadable asks about a flow the gateway cannot read (FlowIn.Unreadable);
	// it cannot be given with Headers.
	Unreadable bool
}

// Explain says which classes apply to a flow, which clusters the policy
// allows and in what order traffic would try them.
func (w WhatIf) Explain(q ExplainQuery) (*Explanation, error) {
	if q.Unreadable && q.Headers != nil {
		return nil, errors.New("explain: a flow the gateway cannot read has no headers to give: ask with headers or unreadable, not both")
	}
	failed, err := w.failed()
	if err != nil {
		return nil, err
	}
	port, ok := w.port(q.Namespace, q.Name, q.Port)
	if !ok {
		port = 1 // unknown service: the plan says 404
	}
	t := wire.Target{Namespace: q.Namespace, Name: q.Name, Port: port}
	in := FlowIn{Entry: "explain", Headers: q.Headers, Namespace: q.SourceNamespace, Unreadable: q.Unreadable}
	p, err := w.plan(w.Policy, q.From, failed, t, in)
	if err != nil {
		return nil, err
	}
	eng := w.Policy
	ex := &Explanation{Service: t.String(), From: q.From, FromRegion: p.Source.SourceRegion, Traffic: trafficLabel(q.Headers, q.SourceNamespace, q.Unreadable),
		Unreadable: q.Unreadable, Policy: sovereignty.PolicyInfo{Name: eng.Name(), Version: w.Version, Digest: eng.Digest()}, Classes: []ExplainedClass{}}
	matched := map[string][]sovereignty.MatcherInfo{}
	addMatches := func(labels map[string]string) {
		f := p.Source
		f.Labels = labels
		for cls, ms := range eng.Matched(&f) {
			for _, m := range ms {
				if !slices.ContainsFunc(matched[cls], func(x sovereignty.MatcherInfo) bool { return x.Path == m.Path }) {
					matched[cls] = append(matched[cls], m)
				}
			}
		}
	}
	addMatches(nil)
	for _, c := range w.Top.Clusters {
		for _, s := range c.Services {
			if s.Namespace == q.Namespace && s.Name == q.Name {
				addMatches(s.Labels)
			}
		}
	}
	for _, name := range eng.ClassNames(p.Classes) {
		ci, _ := eng.Class(name)
		ms := matched[name]
		sort.Slice(ms, func(i, j int) bool { return ms[i].Path < ms[j].Path })
		ex.Classes = append(ex.Classes, ExplainedClass{Name: name, Allowed: ci.Allowed, MatchedBy: ms})
	}
	ex.Regions, ex.Restricted = eng.AllowedRegions(p.Classes)
	order := 0
	for _, pl := range p.Considered {
		ec := ExplainedCandidate{Cluster: pl.Cand.Cluster, Region: pl.Cand.Region, State: "up", Decision: "allow", Rule: pl.Decision.Rule.ID,
			Why: pl.Decision.Describe(p.Source.SourceRegion, SovCandidate(pl.Cand))}
		switch {
		case pl.Cand.Local && !pl.Routable:
			ec.State = "local, down"
		case pl.Cand.Local:
			ec.State = "local"
		case !pl.Routable:
			ec.State = "down"
		}
		if !pl.Decision.Allow {
			ec.Decision = "deny"
		} else if pl.Routable {
			order++
			ec.Order = order
		}
		ex.Candidates = append(ex.Candidates, ec)
	}
	ex.Status, ex.Outcome = outcome(p, eng)
	return ex, nil
}

// unreadableLabel describes a flow the gateway cannot read.
const unreadableLabel = "unreadable (TLS inside CONNECT, the passthrough port or a tcp port)"

func trafficLabel(h http.Header, ns string, unreadable bool) string {
	var parts []string
	if unreadable {
		parts = append(parts, unreadableLabel)
	} else if len(h) == 0 {
		parts = append(parts, "tcp (no headers)")
	} else {
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, k+": "+strings.Join(h[k], ", "))
		}
	}
	if ns != "" {
		parts = append(parts, "namespace "+ns)
	}
	return strings.Join(parts, "; ")
}

// outcome is where a plan sends a flow, or why it is refused.
func outcome(p *Plan, eng *sovereignty.Engine) (int, string) {
	if nre := p.Refusal(eng); nre != nil {
		return nre.Status(), nre.Error()
	}
	var names []string
	for _, c := range p.Allowed {
		names = append(names, c.Cluster)
	}
	s := "goes to " + names[0]
	if len(names) > 1 {
		s += "; fails over to " + strings.Join(names[1:], ", then ")
	}
	return http.StatusOK, s
}

// WriteText prints the explanation for people.
func (ex *Explanation) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Flow:    %s from %s (region %s), %s\n", ex.Service, ex.From, ex.FromRegion, ex.Traffic)
	fmt.Fprintf(w, "Policy:  %s\n", policyLabel(ex.Policy))
	if len(ex.Classes) == 0 {
		fmt.Fprintln(w, "Classes: none apply; the policy's default decides")
	}
	for i, c := range ex.Classes {
		head := "Classes:"
		if i > 0 {
			head = "        "
		}
		fmt.Fprintf(w, "%s %s, allowed regions %s\n", head, c.Name, strings.Join(c.Allowed, ", "))
		for _, m := range c.MatchedBy {
			if m.Kind == sovereignty.KindUnreadable {
				fmt.Fprintf(w, "           applies: %s; %s at %s\n", m.Text, m.Path, m.At)
				continue
			}
			fmt.Fprintf(w, "           matched by %s (%s) at %s\n", m.Path, m.Text, m.At)
		}
	}
	if ex.Restricted {
		fmt.Fprintf(w, "Regions: source and destination must both be in: %s\n", orNone(ex.Regions))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tCLUSTER\tREGION\tSTATE\tDECISION\tWHY")
	for _, c := range ex.Candidates {
		o := "-"
		if c.Order > 0 {
			o = fmt.Sprint(c.Order)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o, c.Cluster, c.Region, c.State, c.Decision, c.Why)
	}
	if len(ex.Candidates) == 0 {
		fmt.Fprintln(tw, "-\t(no cluster exports the service)\t\t\t\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	result := ex.Outcome
	if ex.Status != http.StatusOK {
		result = fmt.Sprintf("refused, %d %s: %s", ex.Status, http.StatusText(ex.Status), ex.Outcome)
	}
	_, err := fmt.Fprintf(w, "\nResult:  %s\n", result)
	return err
}

func policyLabel(p sovereignty.PolicyInfo) string {
	digest := p.Digest
	if len(digest) > 19 {
		digest = digest[:19]
	}
	if p.Version > 0 {
		return fmt.Sprintf("%s (version %d, %s)", p.Name, p.Version, digest)
	}
	return fmt.Sprintf("%s (%s)", p.Name, digest)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// flowKey is one flow the tooling enumerates.
type flowKey struct {
	service string
	target  wire.Target
	from    string
	variant sovereignty.Variant
}

// flows enumerates every service x source cluster x variant of the topology.
func (w WhatIf) flows(variants []sovereignty.Variant) []flowKey {
	var out []flowKey
	for _, svc := range w.Top.Services() {
		ns, name, _ := strings.Cut(svc, "/")
		port, _ := w.port(ns, name, 0)
		t := wire.Target{Namespace: ns, Name: name, Port: port}
		clusters := make([]string, 0, len(w.Top.Clusters))
		for _, c := range w.Top.Clusters {
			clusters = append(clusters, c.Name)
		}
		sort.Strings(clusters)
		for _, from := range clusters {
			for _, v := range variants {
				out = append(out, flowKey{service: svc, target: t, from: from, variant: v})
			}
		}
	}
	return out
}

func (f flowKey) in() FlowIn {
	return FlowIn{Entry: "simulate", Headers: f.variant.Headers, Namespace: f.variant.Namespace, Unreadable: f.variant.Unreadable}
}

// unreadableVariants turns the variants without headers into flows the
// gateway cannot read; a variant with headers was read, so it has none.
func unreadableVariants(vs []sovereignty.Variant) []sovereignty.Variant {
	var out []sovereignty.Variant
	for _, v := range vs {
		if v.Headers != nil {
			continue
		}
		label := "unreadable"
		if v.Namespace != "" {
			label += ", namespace " + v.Namespace
		}
		out = append(out, sovereignty.Variant{Label: label, Namespace: v.Namespace, Unreadable: true})
	}
	return out
}

// SimRow is one flow of a simulation.
type SimRow struct {
	Service string  `json:"service"`
	From    string  `json:"from"`
	Traffic string  `json:"traffic"`
	Before  Outcome `json:"before"`
	After   Outcome `json:"after"`
}

// Outcome is where a flow goes (Cluster) or its refusal (Status, Reason).
type Outcome struct {
	Cluster string `json:"cluster,omitempty"`
	Status  int    `json:"status"`
	Reason  string `json:"reason,omitempty"`
}

func (o Outcome) String() string {
	switch {
	case o.Status == http.StatusOK:
		return o.Cluster
	case o.Status == http.StatusNotFound:
		return "-"
	}
	return fmt.Sprintf("REFUSED %d", o.Status)
}

func outcomeOf(p *Plan, eng *sovereignty.Engine) Outcome {
	status, reason := outcome(p, eng)
	if status == http.StatusOK {
		return Outcome{Cluster: p.Allowed[0].Cluster, Status: status}
	}
	return Outcome{Status: status, Reason: reason}
}

// Simulation answers strait policy simulate.
type Simulation struct {
	Policy sovereignty.PolicyInfo `json:"policy"`
	Fail   []string               `json:"fail"`   // as asked: regions or clusters
	Failed []string               `json:"failed"` // the clusters that takes down
	Rows   []SimRow               `json:"rows"`
	// SourcesDown lists failed clusters, from which no traffic starts.
	SourcesDown []string `json:"sourcesDown"`
	// Unreadable says the flows are ones the gateway cannot read.
	Unreadable bool `json:"unreadable,omitempty"`
}

// Simulate says, for each service and source cluster, where traffic goes
// and what is refused with the Fail clusters and regions down, next to
// where it goes with everything up.
func (w WhatIf) Simulate() (*Simulation, error) {
	failed, err := w.failed()
	if err != nil {
		return nil, err
	}
	sim := &Simulation{Policy: sovereignty.PolicyInfo{Name: w.Policy.Name(), Version: w.Version, Digest: w.Policy.Digest()},
		Fail: append([]string{}, w.Fail...), Failed: sortedSet(failed), Rows: []SimRow{}, SourcesDown: sortedSet(failed), Unreadable: w.Unreadable}
	variants := w.Policy.Variants()
	if w.Unreadable {
		variants = unreadableVariants(variants)
	}
	for _, f := range w.flows(variants) {
		if failed[f.from] {
			continue
		}
		before, err := w.plan(w.Policy, f.from, nil, f.target, f.in())
		if err != nil {
			return nil, err
		}
		after, err := w.plan(w.Policy, f.from, failed, f.target, f.in())
		if err != nil {
			return nil, err
		}
		sim.Rows = append(sim.Rows, SimRow{Service: f.service, From: f.from, Traffic: f.variant.Label,
			Before: outcomeOf(before, w.Policy), After: outcomeOf(after, w.Policy)})
	}
	return sim, nil
}

func sortedSet(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WriteText prints the simulation for people.
func (s *Simulation) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Policy:  %s\n", policyLabel(s.Policy))
	if s.Unreadable {
		fmt.Fprintf(w, "Traffic: %s\n", unreadableLabel)
	}
	if len(s.Fail) > 0 {
		fmt.Fprintf(w, "Down:    %s (--fail %s)\n\n", orNone(s.Failed), strings.Join(s.Fail, " --fail "))
	} else {
		fmt.Fprintf(w, "Down:    (none)\n\n")
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tFROM\tTRAFFIC\tNORMALLY\tWITH FAILURES")
	moved, refused := 0, map[int]int{}
	for _, r := range s.Rows {
		mark := ""
		if r.After != r.Before {
			mark = " *"
			if r.After.Status == http.StatusOK {
				moved++
			}
		}
		if r.After.Status != http.StatusOK && r.After.Status != http.StatusNotFound {
			refused[r.After.Status]++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s%s\n", r.Service, r.From, r.Traffic, r.Before, r.After, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var reasons []string
	for _, r := range s.Rows {
		if r.After.Status != http.StatusOK && r.After.Status != http.StatusNotFound && r.After != r.Before {
			reasons = append(reasons, fmt.Sprintf("  %s from %s (%s): %s", r.Service, r.From, r.Traffic, r.After.Reason))
		}
	}
	if len(reasons) > 0 {
		fmt.Fprintln(w, "\nNewly refused:")
		for _, r := range reasons {
			fmt.Fprintln(w, r)
		}
	}
	if len(s.SourcesDown) > 0 {
		fmt.Fprintf(w, "\nNo traffic starts in %s (down).\n", strings.Join(s.SourcesDown, ", "))
	}
	_, err := fmt.Fprintf(w, "\n%d flows: %d fail over to another cluster, %d refused by policy (403), %d refused with allowed clusters down (503).\n",
		len(s.Rows), moved, refused[http.StatusForbidden], refused[http.StatusServiceUnavailable])
	return err
}

// DiffRow is one decision that two policies make differently.
type DiffRow struct {
	Service string `json:"service"`
	From    string `json:"from"`
	Traffic string `json:"traffic"`
	To      string `json:"to"`
	Old     string `json:"old"` // allow or deny
	New     string `json:"new"`
	Rule    string `json:"rule"` // the new decision's rule
	Why     string `json:"why"`
}

// RouteChange is a flow that goes somewhere else under the new policy.
type RouteChange struct {
	Service string  `json:"service"`
	From    string  `json:"from"`
	Traffic string  `json:"traffic"`
	Old     Outcome `json:"old"`
	New     Outcome `json:"new"`
}

// PolicyDiff answers strait policy diff.
type PolicyDiff struct {
	Old       sovereignty.PolicyInfo `json:"old"`
	New       sovereignty.PolicyInfo `json:"new"`
	Decisions []DiffRow              `json:"decisions"`
	Routes    []RouteChange          `json:"routes"`
}

// Diff lists the flows whose decision changes from old to new on the
// topology (w.Policy is ignored): every service, source cluster,
// destination cluster and variant either policy can classify.
func (w WhatIf) Diff(old, new *sovereignty.Engine, oldVersion uint64) (*PolicyDiff, error) {
	failed, err := w.failed()
	if err != nil {
		return nil, err
	}
	d := &PolicyDiff{Old: sovereignty.PolicyInfo{Name: old.Name(), Version: oldVersion, Digest: old.Digest()},
		New: sovereignty.PolicyInfo{Name: new.Name(), Digest: new.Digest()}, Decisions: []DiffRow{}, Routes: []RouteChange{}}
	variants := old.Variants()
	for _, v := range new.Variants() {
		if !slices.ContainsFunc(variants, func(x sovereignty.Variant) bool { return x.Label == v.Label }) {
			variants = append(variants, v)
		}
	}
	// Whether a flow the gateway cannot read carries a header class can
	// change with either policy's header matchers.
	if len(old.HeaderNames()) > 0 || len(new.HeaderNames()) > 0 {
		variants = append(variants, sovereignty.Variant{Label: "unreadable", Unreadable: true})
	}
	for _, f := range w.flows(variants) {
		if failed[f.from] {
			continue
		}
		po, err := w.plan(old, f.from, failed, f.target, f.in())
		if err != nil {
			return nil, err
		}
		pn, err := w.plan(new, f.from, failed, f.target, f.in())
		if err != nil {
			return nil, err
		}
		for i := range pn.Considered {
			a, b := po.Considered[i], pn.Considered[i]
			if a.Decision.Allow != b.Decision.Allow {
				d.Decisions = append(d.Decisions, DiffRow{Service: f.service, From: f.from, Traffic: f.variant.Label, To: b.Cand.Cluster,
					Old: verdict(a.Decision), New: verdict(b.Decision), Rule: b.Decision.Rule.ID,
					Why: b.Decision.Describe(pn.Source.SourceRegion, SovCandidate(b.Cand))})
			}
		}
		if oo, on := outcomeOf(po, old), outcomeOf(pn, new); oo.Cluster != on.Cluster || oo.Status != on.Status {
			d.Routes = append(d.Routes, RouteChange{Service: f.service, From: f.from, Traffic: f.variant.Label, Old: oo, New: on})
		}
	}
	return d, nil
}

func verdict(d sovereignty.Decision) string {
	if d.Allow {
		return "allow"
	}
	return "deny"
}

// WriteText prints the diff for people.
func (d *PolicyDiff) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Old:     %s\nNew:     %s\n\n", policyLabel(d.Old), policyLabel(d.New))
	if len(d.Decisions) == 0 && len(d.Routes) == 0 {
		_, err := fmt.Fprintln(w, "No flow changes its decision or where it goes.")
		return err
	}
	if len(d.Decisions) > 0 {
		fmt.Fprintln(w, "Decisions that change:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tFROM\tTRAFFIC\tTO\tOLD\tNEW\tRULE")
		for _, r := range d.Decisions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Service, r.From, r.Traffic, r.To, r.Old, r.New, r.Rule)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if len(d.Routes) > 0 {
		fmt.Fprintln(w, "Where traffic goes:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tFROM\tTRAFFIC\tOLD\tNEW")
		for _, r := range d.Routes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Service, r.From, r.Traffic, r.Old, r.New)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	denied, allowed := 0, 0
	for _, r := range d.Decisions {
		if r.New == "deny" {
			denied++
		} else {
			allowed++
		}
	}
	_, err := fmt.Fprintf(w, "%d decisions change (%d now denied, %d now allowed); %d flows change where they go.\n",
		len(d.Decisions), denied, allowed, len(d.Routes))
	return err
}
