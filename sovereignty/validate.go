package sovereignty

import (
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/internal/yamlpos"
)

// validate checks what the structure cannot: names, references between
// regions, groups and classes, empty matchers and classes whose allowed
// regions cannot overlap on a flow they both match.
func (p *policy) validate() []Problem {
	r := newReader(p.file)
	regions := map[string]*yaml.Node{} // every region the policy knows
	groups := map[string][]string{}
	groupNode := map[string]*yaml.Node{}

	for i, rg := range p.regions {
		path := index("spec.regions", i)
		switch {
		case !IsLabel(rg.Value):
			r.Problemf(rg.Node, path, "%q is not a region name (a DNS label: lower-case letters, digits, '-')", rg.Value)
		case regions[rg.Value] != nil:
			r.Problemf(rg.Node, path, "region %q listed twice (first at line %d)", rg.Value, regions[rg.Value].Line)
		default:
			regions[rg.Value] = rg.Node
		}
	}
	for _, g := range p.groups {
		path := "spec.regionGroups." + g.name
		if !IsLabel(g.name) {
			r.Problemf(g.node, path, "%q is not a group name (a DNS label: lower-case letters, digits, '-')", g.name)
			continue
		}
		groupNode[g.name] = g.node
		seen := map[string]*yaml.Node{}
		members := []string{}
		for i, m := range g.members {
			mp := index(path, i)
			switch {
			case !IsLabel(m.Value):
				r.Problemf(m.Node, mp, "%q is not a region name (a DNS label: lower-case letters, digits, '-')", m.Value)
				continue
			case seen[m.Value] != nil:
				r.Problemf(m.Node, mp, "region %q listed twice in group %s (first at line %d)", m.Value, g.name, seen[m.Value].Line)
				continue
			}
			seen[m.Value] = m.Node
			members = append(members, m.Value)
			if regions[m.Value] == nil {
				regions[m.Value] = m.Node
			}
		}
		groups[g.name] = members
	}
	for _, g := range p.groups {
		if _, isRegion := regions[g.name]; isRegion && groupNode[g.name] != nil {
			r.Problemf(g.node, "spec.regionGroups."+g.name, "group %q has the name of a region (line %d); names must say one thing", g.name, regions[g.name].Line)
		}
	}
	if len(regions) > MaxRegions {
		r.Problemf(p.specAt, "spec", "%d regions; the limit is %d", len(regions), MaxRegions)
	}
	if len(p.classes) > MaxClasses {
		r.Problemf(p.specAt, "spec.classes", "%d classes; the limit is %d", len(p.classes), MaxClasses)
	}

	knownNames := func() string {
		var names []string
		for g := range groups {
			names = append(names, g)
		}
		sort.Strings(names)
		var rs []string
		for rg := range regions {
			rs = append(rs, rg)
		}
		sort.Strings(rs)
		return "groups: " + orNone(names) + "; regions: " + orNone(rs)
	}
	// expand resolves a region or group name; ok is false when unknown.
	expand := func(name string) ([]string, bool) {
		if m, ok := groups[name]; ok {
			return m, true
		}
		if _, ok := regions[name]; ok {
			return []string{name}, true
		}
		return nil, false
	}

	effective := make([][]string, len(p.classes)) // nil: the class is invalid, skip the overlap check
	names := map[string]*yaml.Node{}
	for ci, c := range p.classes {
		ok := true
		if c.nameNode != nil {
			switch {
			case !IsLabel(c.name):
				r.Problemf(c.nameNode, c.path+".name", "%q is not a class name (a DNS label: lower-case letters, digits, '-')", c.name)
				ok = false
			case names[c.name] != nil:
				r.Problemf(c.nameNode, c.path+".name", "class %q defined twice (first at line %d)", c.name, names[c.name].Line)
				ok = false
			default:
				names[c.name] = c.nameNode
			}
		} else {
			ok = false
		}
		if !c.allowedList {
			ok = false
		}
		// Allowed regions and their effective (group-expanded) set.
		set := map[string]bool{}
		if c.allowedList && len(c.allowed) == 0 {
			r.Problemf(c.allowedNode, c.path+".allowedRegions", "empty: a class must allow at least one region")
			ok = false
		}
		for i, a := range c.allowed {
			rs, known := expand(a.Value)
			if !known {
				r.Problemf(a.Node, index(c.path+".allowedRegions", i), "unknown region or group %q (%s)", a.Value, knownNames())
				ok = false
				continue
			}
			for _, rg := range rs {
				set[rg] = true
			}
		}
		if ok && len(set) == 0 && len(c.allowed) > 0 {
			r.Problemf(c.allowedNode, c.path+".allowedRegions", "the effective region set is empty (%s expand to no region): every flow in the class would be refused", strings.Join(values(c.allowed), ", "))
			ok = false
		}
		// Matchers.
		if c.matchNode != nil && len(c.services)+len(c.sources)+len(c.headers) == 0 {
			r.Problemf(c.matchNode, c.path+".match", "no matcher: give at least one of services, sources or headers")
			ok = false
		}
		for _, m := range c.services {
			if m.node == nil || m.node.Kind != yaml.MappingNode {
				continue
			}
			if m.namespace == "" && m.name == "" && len(m.labels) == 0 {
				r.Problemf(m.node, m.path, "empty matcher: it would match every service; give namespace, name or labels")
				ok = false
			}
			ok = r.labelField(m.node, m.path+".namespace", m.namespace, "namespace") && ok
			ok = r.labelField(m.node, m.path+".name", m.name, "service name") && ok
			for _, l := range m.labels {
				if !isLabelKey(l.Key) {
					r.Problemf(l.Node, m.path+".labels."+l.Key, "%q is not a label key", l.Key)
					ok = false
				}
			}
		}
		for _, m := range c.sources {
			if m.node == nil || m.node.Kind != yaml.MappingNode {
				continue
			}
			if m.cluster == "" && m.region == "" && m.namespace == "" {
				r.Problemf(m.node, m.path, "empty matcher: it would match every source; give cluster, region or namespace")
				ok = false
			}
			ok = r.labelField(m.node, m.path+".cluster", m.cluster, "cluster name") && ok
			ok = r.labelField(m.node, m.path+".namespace", m.namespace, "namespace") && ok
			if m.region != "" {
				if rs, known := expand(m.region); !known {
					r.Problemf(m.regionNode, m.path+".region", "unknown region or group %q (%s)", m.region, knownNames())
					ok = false
				} else if len(rs) == 0 {
					r.Problemf(m.regionNode, m.path+".region", "group %q has no region: the matcher could never match", m.region)
					ok = false
				}
			}
		}
		for _, m := range c.headers {
			if m.node == nil || m.node.Kind != yaml.MappingNode {
				continue
			}
			switch {
			case m.name == "":
				r.Missing(m.node, m.path+".name", "the header name")
				ok = false
			case !isHeaderName(m.name):
				r.Problemf(m.node, m.path+".name", "%q is not an HTTP header name", m.name)
				ok = false
			}
			switch v := strings.Trim(m.value, " \t"); {
			case !m.hasValue:
			case v == "":
				r.Problemf(m.node, m.path+".value", "empty value: give the value that marks the traffic, or leave value out to match the header with any value")
				ok = false
			case strings.Contains(v, ","):
				r.Problemf(m.node, m.path+".value", "%q holds a comma: a header's comma-separated list is read item by item, so no item could equal it", m.value)
				ok = false
			}
		}
		if c.unreadableNode != nil && len(c.headers) == 0 {
			r.Problemf(c.unreadableNode, c.path+".unreadable", "unreadable says what flows the gateway cannot read get from the class's header matchers, and the class has none: remove unreadable or add match.headers")
			ok = false
		}
		if c.catalog == CatalogRegionOnly && len(c.services) == 0 {
			r.Problemf(c.catalogNode, c.path+".catalog", "region-only scopes catalog entries of services: the class needs a services matcher")
			ok = false
		}
		if ok {
			effective[ci] = sortedKeys(set)
		}
	}

	// Two classes that can match one flow must share a region, or every
	// such flow is refused whatever the topology.
	for j := range p.classes {
		for i := 0; i < j; i++ {
			a, b := p.classes[i], p.classes[j]
			if effective[i] == nil || effective[j] == nil || intersects(effective[i], effective[j]) {
				continue
			}
			w, can := coMatch(a, b, expand)
			if !can {
				continue
			}
			r.Problemf(b.nameNode, b.path,
				"classes %q (line %d) and %q (line %d) can match the same flow (%s) but allow disjoint regions [%s] and [%s]: such a flow would always be refused; narrow a matcher or share a region",
				a.name, a.nameNode.Line, b.name, b.nameNode.Line, w, strings.Join(effective[i], " "), strings.Join(effective[j], " "))
		}
	}
	return r.Problems()
}

// labelField reports v, the field at path, unless it is empty or a DNS
// label; what names the field in the message. It returns whether v passed.
func (r reader) labelField(n *yaml.Node, path, v, what string) bool {
	if v == "" || IsLabel(v) {
		return true
	}
	r.Problemf(n, path, "%q is not a %s (a DNS label)", v, what)
	return false
}

// coMatch reports whether some flow can satisfy a matcher of a and a
// matcher of b at once, with a description of such a flow.
func coMatch(a, b classSpec, expand func(string) ([]string, bool)) (string, bool) {
	type m struct {
		kind, path string
		i          int
	}
	matchers := func(c classSpec) []m {
		var out []m
		for i, x := range c.services {
			out = append(out, m{"service", x.path, i})
		}
		for i, x := range c.sources {
			out = append(out, m{"source", x.path, i})
		}
		for i, x := range c.headers {
			out = append(out, m{"header", x.path, i})
		}
		return out
	}
	ma, mb := matchers(a), matchers(b)
	for _, x := range ma {
		for _, y := range mb {
			ok := true
			switch {
			case x.kind != y.kind:
			case x.kind == "service":
				ok = servicesCompatible(a.services[x.i], b.services[y.i])
			case x.kind == "source":
				ok = sourcesCompatible(a.sources[x.i], b.sources[y.i], expand)
			case x.kind == "header":
				ok = headersCompatible(a.headers[x.i], b.headers[y.i])
			}
			if ok {
				return "one matching both " + x.path + " and " + y.path, true
			}
		}
	}
	return "", false
}

func compatible(x, y string) bool { return x == "" || y == "" || x == y }

func servicesCompatible(x, y serviceMatch) bool {
	if !compatible(x.namespace, y.namespace) || !compatible(x.name, y.name) {
		return false
	}
	for _, lx := range x.labels {
		for _, ly := range y.labels {
			if lx.Key == ly.Key && lx.Value != ly.Value {
				return false
			}
		}
	}
	return true
}

func sourcesCompatible(x, y sourceMatch, expand func(string) ([]string, bool)) bool {
	if !compatible(x.cluster, y.cluster) || !compatible(x.namespace, y.namespace) {
		return false
	}
	if x.region != "" && y.region != "" {
		rx, _ := expand(x.region)
		ry, _ := expand(y.region)
		return intersects(rx, ry)
	}
	return true
}

// headersCompatible: a flow whose classifying header carries two different
// values is refused as ambiguous, so two matchers that want different
// values of one header never both apply to a flow that goes anywhere.
func headersCompatible(x, y headerMatch) bool {
	if !strings.EqualFold(x.name, y.name) {
		return true
	}
	return !x.hasValue || !y.hasValue || strings.EqualFold(strings.Trim(x.value, " \t"), strings.Trim(y.value, " \t"))
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func values(ns []yamlpos.Scalar) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Value
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
