package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

// This file checks the gateway's routing choices against an oracle that
// reads the policy model directly: it shares no code with the sovereignty
// engine or the planner, only the semantics written in docs/residency.md.

type mPolicy struct {
	regions []string            // regions named in spec.regions
	groups  map[string][]string // group -> members
	classes []mClass
	deny    bool // default deny
}

type mClass struct {
	name     string
	allowed  []string // regions or groups
	services []mService
	sources  []mSource
	headers  []mHeader
}

type mService struct {
	ns, name string
	labels   map[string]string
}

type mSource struct{ cluster, region, ns string }

type mHeader struct {
	name, value string
	hasValue    bool
}

type mCluster struct {
	name, region, zone string
	down               bool
	services           []mExport
}

type mExport struct {
	ns, name string
	ports    []int
	labels   map[string]string
	healthy  int
}

type mFlow struct {
	ns, name string
	port     int
	from     string
	srcNS    string
	headers  http.Header
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func subset[T any](r *rand.Rand, xs []T, min int) []T {
	var out []T
	for _, x := range xs {
		if r.IntN(2) == 0 {
			out = append(out, x)
		}
	}
	for len(out) < min {
		out = append(out, pick(r, xs))
	}
	return out
}

var (
	regionPool = []string{"r1", "r2", "r3", "r4", "r5"}
	nsPool     = []string{"a", "b"}
	svcPool    = []string{"s1", "s2", "s3"}
	labelPool  = []map[string]string{{"dc": "x"}, {"dc": "y"}, {"tier": "gold"}, {"dc": "x", "tier": "gold"}}
	hdrPool    = []string{"X-H1", "x-h2"}
	valPool    = []string{"v1", "v2"}
	// flowValPool is what clients send: the policy's values in other
	// cases and spacing, lists, empty items and a value no matcher names.
	flowValPool = []string{"v1", "v2", "V1", " v2\t", "v1, v2", "v1,,V1", ",", "v3"}
)

func genPolicy(r *rand.Rand) mPolicy {
	p := mPolicy{groups: map[string][]string{}, deny: r.IntN(5) == 0}
	known := subset(r, regionPool[:4], 2) // r5 stays unknown to every policy
	slices.Sort(known)
	known = slices.Compact(known)
	p.regions = known
	for i := range r.IntN(3) {
		p.groups[fmt.Sprintf("g%d", i+1)] = slices.Compact(sorted(subset(r, known, 1)))
	}
	names := append([]string{}, known...)
	for g := range p.groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for i := range 1 + r.IntN(3) {
		c := mClass{name: fmt.Sprintf("c%d", i+1), allowed: slices.Compact(sorted(subset(r, names, 1)))}
		for range 1 + r.IntN(2) {
			switch r.IntN(3) {
			case 0:
				m := mService{}
				if r.IntN(2) == 0 {
					m.ns = pick(r, nsPool)
				}
				if r.IntN(2) == 0 {
					m.name = pick(r, svcPool)
				}
				if r.IntN(2) == 0 || m.ns == "" && m.name == "" {
					m.labels = pick(r, labelPool)
				}
				c.services = append(c.services, m)
			case 1:
				m := mSource{}
				if r.IntN(3) == 0 {
					m.cluster = fmt.Sprintf("k%d", 1+r.IntN(5))
				}
				if r.IntN(2) == 0 {
					m.region = pick(r, names)
				}
				if r.IntN(2) == 0 || m.cluster == "" && m.region == "" {
					m.ns = pick(r, nsPool)
				}
				c.sources = append(c.sources, m)
			default:
				m := mHeader{name: pick(r, hdrPool)}
				if r.IntN(3) > 0 {
					m.value, m.hasValue = pick(r, valPool), true
				}
				c.headers = append(c.headers, m)
			}
		}
		p.classes = append(p.classes, c)
	}
	return p
}

func sorted(s []string) []string { s = slices.Clone(s); sort.Strings(s); return s }

func (p mPolicy) yaml() string {
	var b strings.Builder
	b.WriteString("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: prop}\nspec:\n")
	fmt.Fprintf(&b, "  regions: [%s]\n", strings.Join(p.regions, ", "))
	if len(p.groups) > 0 {
		b.WriteString("  regionGroups:\n")
		for _, g := range sortedKeys(p.groups) {
			fmt.Fprintf(&b, "    %s: [%s]\n", g, strings.Join(p.groups[g], ", "))
		}
	}
	b.WriteString("  classes:\n")
	for _, c := range p.classes {
		fmt.Fprintf(&b, "    - name: %s\n      allowedRegions: [%s]\n      match:\n", c.name, strings.Join(c.allowed, ", "))
		if len(c.services) > 0 {
			b.WriteString("        services:\n")
			for _, m := range c.services {
				labels := ""
				if m.labels != nil {
					var ls []string
					for _, k := range sortedKeys(m.labels) {
						ls = append(ls, k+": "+m.labels[k])
					}
					labels = "{" + strings.Join(ls, ", ") + "}"
				}
				fmt.Fprintf(&b, "          - %s\n", flowMapping("namespace", m.ns, "name", m.name, "labels", labels))
			}
		}
		if len(c.sources) > 0 {
			b.WriteString("        sources:\n")
			for _, m := range c.sources {
				fmt.Fprintf(&b, "          - %s\n", flowMapping("cluster", m.cluster, "region", m.region, "namespace", m.ns))
			}
		}
		if len(c.headers) > 0 {
			b.WriteString("        headers:\n")
			for _, m := range c.headers {
				if m.hasValue {
					fmt.Fprintf(&b, "          - {name: %s, value: %s}\n", m.name, m.value)
				} else {
					fmt.Fprintf(&b, "          - {name: %s}\n", m.name)
				}
			}
		}
	}
	if p.deny {
		b.WriteString("  default: deny\n")
	}
	return b.String()
}

// flowMapping renders the pairs of kv (key, value, key, value...) whose
// value is set as a YAML flow mapping, in order.
func flowMapping(kv ...string) string {
	var f []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			f = append(f, kv[i]+": "+kv[i+1])
		}
	}
	return "{" + strings.Join(f, ", ") + "}"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func genTopology(r *rand.Rand) []mCluster {
	n := 2 + r.IntN(5)
	var out []mCluster
	for i := range n {
		c := mCluster{name: fmt.Sprintf("k%d", i+1), region: pick(r, regionPool), down: r.IntN(4) == 0}
		if r.IntN(2) == 0 {
			c.zone = pick(r, []string{"z1", "z2"})
		}
		for _, ns := range nsPool {
			for _, s := range svcPool {
				if r.IntN(3) != 0 {
					continue
				}
				e := mExport{ns: ns, name: s, ports: []int{80}, healthy: r.IntN(3)}
				if r.IntN(6) == 0 {
					e.ports = []int{81}
				}
				if r.IntN(2) == 0 {
					e.labels = pick(r, labelPool)
				}
				c.services = append(c.services, e)
			}
		}
		out = append(out, c)
	}
	return out
}

func genFlow(r *rand.Rand, top []mCluster) mFlow {
	f := mFlow{ns: pick(r, nsPool), name: pick(r, svcPool), port: 80, from: pick(r, top).name}
	if r.IntN(2) == 0 {
		f.srcNS = pick(r, nsPool)
	}
	switch r.IntN(4) {
	case 0: // L4
	case 1:
		f.headers = http.Header{}
	case 2:
		f.headers = http.Header{}
		f.headers.Add(pick(r, hdrPool), pick(r, flowValPool))
	default:
		f.headers = http.Header{}
		h := pick(r, hdrPool)
		f.headers.Add(h, pick(r, flowValPool))
		f.headers.Add(h, pick(r, flowValPool))
		f.headers.Add(pick(r, hdrPool), pick(r, flowValPool))
	}
	return f
}

// --- the oracle ---

func (p mPolicy) expand(name string) []string {
	if m, ok := p.groups[name]; ok {
		return m
	}
	if slices.Contains(p.regions, name) {
		return []string{name}
	}
	return nil
}

// oracleClasses returns the classes that apply to a flow whose service
// carries labels; firm, those of them that a matcher reading nothing the
// client claims applies (a service matcher, a source matcher without a
// namespace: headers and the source namespace are claims); and whether a
// classifying header is ambiguous or carries a value no matcher names
// (either refuses the flow).
func (p mPolicy) oracleClasses(f mFlow, srcRegion string, labels map[string]string) (out, firm map[string]bool, bad bool) {
	out, firm = map[string]bool{}, map[string]bool{}
	for _, c := range p.classes {
		hit := false
		for _, m := range c.services {
			ok := (m.ns == "" || m.ns == f.ns) && (m.name == "" || m.name == f.name)
			for k, v := range m.labels {
				if labels[k] != v {
					ok = false
				}
			}
			if ok {
				hit, firm[c.name] = true, true
			}
		}
		for _, m := range c.sources {
			ok := (m.cluster == "" || m.cluster == f.from) && (m.ns == "" || m.ns == f.srcNS) &&
				(m.region == "" || slices.Contains(p.expand(m.region), srcRegion))
			if ok {
				hit = true
				if m.ns == "" {
					firm[c.name] = true
				}
			}
		}
		for _, m := range c.headers {
			items, present := oracleHeaderItems(f.headers, m.name)
			if present && !m.hasValue || slices.Contains(items, strings.ToLower(m.value)) {
				hit = true
			}
		}
		if hit {
			out[c.name] = true
		}
	}
	// A classifying header (one a matcher with a value reads) is bad when
	// its items differ, or when its item is a value no matcher names.
	for _, c := range p.classes {
		for _, m := range c.headers {
			if !m.hasValue {
				continue
			}
			items, _ := oracleHeaderItems(f.headers, m.name)
			if len(items) == 0 {
				continue
			}
			named := false
			for _, c2 := range p.classes {
				for _, m2 := range c2.headers {
					if m2.hasValue && strings.EqualFold(m2.name, m.name) && strings.ToLower(m2.value) == items[0] {
						named = true
					}
				}
			}
			if len(items) > 1 || !named {
				bad = true
			}
		}
	}
	return out, firm, bad
}

// oracleHeaderItems returns the distinct lower-cased non-empty items of
// every comma-separated value of header name, and whether it is present.
func oracleHeaderItems(h http.Header, name string) (items []string, present bool) {
	for k, vs := range h {
		if !strings.EqualFold(k, name) {
			continue
		}
		present = present || len(vs) > 0
		for _, v := range vs {
			for _, it := range strings.Split(v, ",") {
				if it = strings.ToLower(strings.TrimSpace(it)); it != "" && !slices.Contains(items, it) {
					items = append(items, it)
				}
			}
		}
	}
	return items, present
}

// oracleAllows decides from first principles. Claims only narrow: the
// flow must be allowed by the classes it carries without its claims
// (firm) and by all its classes. A set of classes allows when every class
// in it allows both regions; the empty set gets the default.
func (p mPolicy) oracleAllows(classes, firm map[string]bool, ambiguous bool, src, dst string) bool {
	return !ambiguous && p.setAllows(firm, src, dst) && p.setAllows(classes, src, dst)
}

// setAllows reports whether a flow carrying exactly classes may go from
// src to dst: every class allows both regions; no class means the default.
func (p mPolicy) setAllows(classes map[string]bool, src, dst string) bool {
	if len(classes) == 0 {
		return !p.deny
	}
	for _, c := range p.classes {
		if !classes[c.name] {
			continue
		}
		var allowed []string
		for _, a := range c.allowed {
			allowed = append(allowed, p.expand(a)...)
		}
		if !slices.Contains(allowed, src) || !slices.Contains(allowed, dst) {
			return false
		}
	}
	return true
}

type oracleResult struct {
	allowed []string // in the order the gateway must try them
	status  int      // 0 when allowed is non-empty
	// narrowed: a candidate its claims' classes would allow is refused
	// because claims only narrow (for the generator's coverage).
	narrowed bool
}

func oracle(p mPolicy, top []mCluster, f mFlow) oracleResult {
	var self mCluster
	for _, c := range top {
		if c.name == f.from {
			self = c
		}
	}
	// Classification: the union over every cluster's labels for the service.
	classes, firm, ambiguous := p.oracleClasses(f, self.region, nil)
	known := false
	for _, c := range top {
		for _, e := range c.services {
			if e.ns == f.ns && e.name == f.name {
				known = true
				cl, fi, _ := p.oracleClasses(f, self.region, e.labels)
				for k := range cl {
					classes[k] = true
				}
				for k := range fi {
					firm[k] = true
				}
			}
		}
	}
	type cand struct {
		c        mCluster
		routable bool
		rank     int
	}
	var cands []cand
	for _, c := range top {
		for _, e := range c.services {
			if e.ns != f.ns || e.name != f.name || !slices.Contains(e.ports, f.port) {
				continue
			}
			switch {
			case c.name == self.name:
				cands = append(cands, cand{c, true, -1})
			case self.zone != "" && c.zone == self.zone:
				cands = append(cands, cand{c, !c.down && e.healthy > 0, 0})
			case c.region == self.region:
				cands = append(cands, cand{c, !c.down && e.healthy > 0, 1})
			default:
				cands = append(cands, cand{c, !c.down && e.healthy > 0, 2})
			}
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].rank != cands[j].rank {
			return cands[i].rank < cands[j].rank
		}
		return cands[i].c.name < cands[j].c.name
	})
	var res oracleResult
	allowedDown, denied := false, false
	for _, c := range cands {
		ok := p.oracleAllows(classes, firm, ambiguous, self.region, c.c.region)
		if !ok && !ambiguous && p.setAllows(classes, self.region, c.c.region) {
			res.narrowed = true
		}
		switch {
		case ok && c.routable:
			res.allowed = append(res.allowed, c.c.name)
		case ok:
			allowedDown = true
		default:
			denied = true
		}
	}
	switch {
	case len(res.allowed) > 0:
	case !known:
		res.status = 404
	case allowedDown:
		res.status = 503
	case denied && ambiguous:
		res.status = 400
	case denied:
		res.status = 403
	default:
		res.status = 503
	}
	return res
}

// --- bridging the model to the gateway's inputs ---

func snapshotOf(top []mCluster, from string) *catalog.Snapshot {
	snap := &catalog.Snapshot{Local: from}
	for _, c := range top {
		v := &catalog.ClusterView{Entry: catalog.Entry{Node: c.name, Cluster: c.name, Region: c.region, Zone: c.zone, Gateway: c.name + ":15443"},
			Reachable: !c.down, State: "alive"}
		for _, e := range c.services {
			s := catalog.Service{Namespace: e.ns, Name: e.name, Labels: e.labels, Healthy: e.healthy, Total: 2}
			for _, port := range e.ports {
				s.Ports = append(s.Ports, catalog.Port{Port: port})
			}
			v.Services = append(v.Services, s)
		}
		catalog.SortServices(v.Services)
		snap.Clusters = append(snap.Clusters, v)
	}
	return snap
}

func gatewayPlan(eng *sovereignty.Engine, top []mCluster, f mFlow) *route.Plan {
	var self mCluster
	for _, c := range top {
		if c.name == f.from {
			self = c
		}
	}
	t := wire.Target{Namespace: f.ns, Name: f.name, Port: f.port}
	lv := route.LocalView{}
	for _, e := range self.services {
		if e.ns == f.ns && e.name == f.name {
			lv = route.LocalView{Exists: true, HasPort: slices.Contains(e.ports, f.port), Healthy: true, Labels: e.labels}
		}
	}
	// As Gateway.plan does: the service's classes computed apart
	// (classCache) and handed in.
	snap := snapshotOf(top, f.from)
	in := route.FlowIn{Entry: "prop", Headers: f.headers, Namespace: f.srcNS, Service: route.ServiceClasses(eng, lv, snap, t)}
	return route.NewPlan(route.Self{Cluster: self.name, Region: self.region, Zone: self.zone}, lv, snap, eng, t, in, nil)
}

// TestPlanAgainstOracle: random topologies, policies, failure sets and
// flows. For every flow the clusters the gateway would try are exactly the
// oracle's allowed healthy ones in the oracle's order; whichever of them
// answers first is the gateway's choice, so it is always allowed; and a
// flow with none is refused with the oracle's status, never sent elsewhere.
// The inbound gateway at the chosen cluster agrees, and no forged facts
// make it allow what the oracle forbids.
func TestPlanAgainstOracle(t *testing.T) {
	const policies, flowsPerPolicy = 1500, 12
	r := rand.New(rand.NewPCG(20250301, 7))
	compiled, rejected := 0, 0
	var refused, routed, failedOver, restricted, narrowed int
	statuses := map[int]int{}
	for range policies {
		mp := genPolicy(r)
		doc := mp.yaml()
		eng, err := sovereignty.Compile("prop.yaml", []byte(doc))
		if err != nil {
			var pe *sovereignty.Error
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "disjoint regions") {
				t.Fatalf("generated policy refused for another reason: %v\n%s", err, doc)
			}
			rejected++
			continue
		}
		compiled++
		for range flowsPerPolicy {
			top := genTopology(r)
			f := genFlow(r, top)
			want := oracle(mp, top, f)
			if want.narrowed {
				narrowed++
			}
			p := gatewayPlan(eng, top, f)
			var got []string
			for _, c := range p.Allowed {
				got = append(got, c.Cluster)
			}
			if strings.Join(got, ",") != strings.Join(want.allowed, ",") {
				t.Fatalf("flow %+v\npolicy:\n%s\ntopology %+v\ngateway would try [%s], oracle allows [%s]",
					f, doc, top, strings.Join(got, ","), strings.Join(want.allowed, ","))
			}
			nre := p.Refusal(eng)
			if (nre == nil) != (want.status == 0) || nre != nil && nre.Status() != want.status {
				t.Fatalf("flow %+v\npolicy:\n%s\ntopology %+v\ngateway refusal %v, oracle status %d", f, doc, top, nre, want.status)
			}
			if nre != nil {
				refused++
				statuses[nre.Status()]++
				continue
			}
			// The gateway's choice: the first allowed cluster that answers,
			// with a random set of them failing at connect time.
			fails := map[string]bool{}
			for _, c := range p.Allowed {
				fails[c.Cluster] = r.IntN(3) == 0
			}
			conn, chosen, _, err := firstAnswer(context.Background(), p.Allowed, 0, func(_ context.Context, c route.Candidate) (net.Conn, error) {
				if fails[c.Cluster] {
					return nil, errors.New("connection refused")
				}
				a, b := net.Pipe()
				b.Close()
				return a, nil
			}, nil)
			if err != nil {
				for _, c := range p.Allowed {
					if !fails[c.Cluster] {
						t.Fatalf("gave up with %s answering", c.Cluster)
					}
				}
				continue
			}
			conn.Close()
			routed++
			if chosen.Cluster != p.Allowed[0].Cluster {
				failedOver++
			}
			if !slices.Contains(want.allowed, chosen.Cluster) || fails[chosen.Cluster] {
				t.Fatalf("gateway chose %s; oracle allows %v", chosen.Cluster, want.allowed)
			}
			if p.Facts(eng, 1).Restricted {
				restricted++
			}
			checkInboundAgrees(t, r, mp, eng, top, f, p, chosen, doc)
		}
	}
	t.Logf("%d policies compiled, %d refused as disjoint; %d flows routed (%d failed over, %d restricted), %d refused %v; %d kept from a cluster their claims alone would allow",
		compiled, rejected, routed, failedOver, restricted, refused, statuses, narrowed)
	if compiled < policies/2 || routed < 2500 || failedOver < 150 || restricted < 400 || rejected == 0 ||
		statuses[403] < 200 || statuses[503] < 200 || statuses[404] < 200 || narrowed < 50 {
		t.Fatalf("the generator covers too little: %d compiled, %d rejected, %d routed, %d failed over, %d restricted, refused %v, %d narrowed by claims",
			compiled, rejected, routed, failedOver, restricted, statuses, narrowed)
	}
}

// checkInboundAgrees runs the inbound gateway's check at the chosen
// cluster, with the outbound gateway's facts and with forged ones, and
// compares it with the oracle: a stream is allowed exactly when the oracle
// allows it on what the inbound gateway sees itself (its labels, the
// certificate's region, the claimed headers and namespace), and again with
// the claimed classes added, and a claimed region set holds both ends;
// the facts' namespace, headers and classes are claims, which only narrow.
// Whatever the facts say, the inbound gateway never allows what its own
// view forbids.
func checkInboundAgrees(t *testing.T, r *rand.Rand, mp mPolicy, eng *sovereignty.Engine, top []mCluster, f mFlow, p *route.Plan, chosen route.Candidate, doc string) {
	t.Helper()
	if chosen.Local {
		return
	}
	var dst mCluster
	for _, c := range top {
		if c.name == chosen.Cluster {
			dst = c
		}
	}
	var labels map[string]string
	for _, e := range dst.services {
		if e.ns == f.ns && e.name == f.name {
			labels = e.labels
		}
	}
	self := sovereignty.Candidate{Cluster: dst.name, Region: dst.region}
	target := wire.Target{Namespace: f.ns, Name: f.name, Port: f.port}
	expect := func(src mCluster, facts wire.Facts) bool {
		// The namespace, headers and classes in the facts are claims: only
		// the labels here and the certificate's cluster and region are firm.
		g := mFlow{ns: f.ns, name: f.name, port: f.port, from: src.name, srcNS: facts.Namespace, headers: facts.Header()}
		own, firm, amb := mp.oracleClasses(g, src.region, labels)
		all := map[string]bool{}
		for k := range own {
			all[k] = true
		}
		for _, c := range facts.Classes {
			all[c] = true
		}
		ok := mp.oracleAllows(own, firm, amb, src.region, dst.region) && mp.oracleAllows(all, firm, amb, src.region, dst.region)
		if facts.Restricted {
			ok = ok && slices.Contains(facts.Regions, src.region) && slices.Contains(facts.Regions, dst.region)
		}
		return ok
	}
	var src mCluster
	for _, c := range top {
		if c.name == f.from {
			src = c
		}
	}
	honest := p.Facts(eng, 1)
	cases := []struct {
		src   mCluster
		facts wire.Facts
	}{{src, honest}}
	// Forged facts from any cluster's certificate: random classes, regions
	// and restriction. The source region still comes from the certificate.
	for range 3 {
		forged := wire.Facts{Namespace: pick(r, append(nsPool, "")), Headers: honest.Headers, Restricted: r.IntN(2) == 0}
		for _, c := range mp.classes {
			if r.IntN(2) == 0 {
				forged.Classes = append(forged.Classes, c.name)
			}
		}
		forged.Regions = subset(r, regionPool, 0)
		cases = append(cases, struct {
			src   mCluster
			facts wire.Facts
		}{pick(r, top), forged})
	}
	for _, tc := range cases {
		peer := identity.ID{TrustDomain: "strait.local", Region: tc.src.region, Cluster: tc.src.name}
		// As the gateway decides: the service's classes precomputed.
		v := decideInbound(eng, self, target, labels, eng.ServiceClasses(target.Namespace, target.Name, labels), peer, tc.facts)
		if want := expect(tc.src, tc.facts); v.decision.Allow != want {
			t.Fatalf("inbound at %s, stream from %s with facts %+v: allow=%v (%s), oracle says %v\npolicy:\n%s",
				dst.name, tc.src.name, tc.facts, v.decision.Allow, v.reason, want, doc)
		}
	}
}
