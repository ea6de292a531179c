package sovereignty

import (
	"fmt"
	"math/bits"
	"net/http"
	"net/textproto"
	"slices"
	"sort"
	"strings"

	"github.com/straitmesh/strait/internal/yamlpos"
)

// Flow is what the engine knows about one connection or request.
type Flow struct {
	// Namespace and Name name the destination service.
	Namespace, Name string
	// Labels are the destination service's labels as one cluster exports
	// them. Classify a flow once per distinct label set and take the Union.
	Labels map[string]string
	// SourceCluster and SourceRegion say where the flow comes from. The
	// inbound gateway takes them from the peer's verified certificate.
	SourceCluster, SourceRegion string
	// SourceNamespace is the namespace of the calling workload, "" when
	// unknown.
	SourceNamespace string
	// Headers are the HTTP request headers, keyed in canonical form as
	// net/http keeps them; nil for L4 traffic, which no header matcher
	// classifies. Values compare case-insensitively after trimming
	// spaces and tabs, and a comma-separated list is its items.
	Headers http.Header
	// Unreadable says the flow carries bytes the gateway cannot read (TLS
	// inside CONNECT, the passthrough port, tcp ports), so header matchers
	// cannot be checked: the flow carries every class with a header
	// matcher unless the class says unreadable: allow. Headers may still
	// hold what was read around the unreadable bytes (the CONNECT request
	// of a tunnel carrying TLS).
	Unreadable bool
	// Service, when computed by the Engine deciding the flow
	// (Engine.ServiceClasses of Namespace, Name and each label set the
	// service is exported with), stands for the services matchers: the
	// engine then does not read Namespace, Name and Labels. The gateway
	// computes it when its catalog or policy changes, so a flow costs only
	// what it carries itself. Zero, or from another engine: the engine
	// matches Namespace, Name and Labels itself.
	Service ServiceClasses
}

// Candidate is a cluster a flow could be sent to.
type Candidate struct {
	Cluster, Region string
}

// Reason says why a decision came out as it did.
type Reason uint8

// Reasons of a Decision.
const (
	// ReasonDefault: no class applies; the policy's default decided.
	ReasonDefault Reason = iota
	// ReasonAllowed: every class of the flow allows both regions.
	ReasonAllowed
	// ReasonSourceRegion: a class of the flow does not allow the source's region.
	ReasonSourceRegion
	// ReasonDestinationRegion: a class of the flow does not allow the candidate's region.
	ReasonDestinationRegion
	// ReasonAmbiguousHeader: a header the policy classifies by carries
	// several different values (in several fields or one comma-separated
	// list).
	ReasonAmbiguousHeader
	// ReasonUnknownHeaderValue: a header the policy classifies by carries
	// a value no matcher names (refused unless spec.onUnknownValue is
	// ignore).
	ReasonUnknownHeaderValue
	// ReasonClaimsOnly: every class of the flow allows both regions, but
	// only claims put the flow in them (headers, the source namespace,
	// an unreadable flow's header classes, classes a peer names), and
	// claims only narrow: without them no class applies and the policy's
	// default, deny, decides.
	ReasonClaimsOnly
)

func (r Reason) String() string {
	switch r {
	case ReasonDefault:
		return "default"
	case ReasonAllowed:
		return "allowed-regions"
	case ReasonSourceRegion:
		return "source-region"
	case ReasonDestinationRegion:
		return "destination-region"
	case ReasonAmbiguousHeader:
		return "ambiguous-header"
	case ReasonUnknownHeaderValue:
		return "unknown-header-value"
	case ReasonClaimsOnly:
		return "claims-only"
	}
	return "unknown"
}

// Rule is the part of a policy that decided. It never changes once compiled.
type Rule struct {
	// ID is stable across edits that keep the class: "class:pii-eu",
	// "default", "header:X-Data-Residency".
	ID string
	// Class is the class name, "" for the default and header rules.
	Class string
	// Path is the field in the policy: "spec.classes[0].allowedRegions".
	Path string
	// At is "file:line:column" of that field.
	At string
	// Regions are the class's allowed regions, groups expanded, sorted.
	Regions []string
}

// Decision is the engine's answer for one flow and one candidate.
type Decision struct {
	Allow  bool
	Reason Reason
	Rule   *Rule // never nil
}

// Describe says in one line why d was taken, for people: refusal reasons,
// X-Strait-Reason and audit records. It allocates; the decision did not.
func (d Decision) Describe(sourceRegion string, c Candidate) string {
	r := d.Rule
	switch d.Reason {
	case ReasonDefault:
		if d.Allow {
			return fmt.Sprintf("no residency class applies; the policy's default is allow (%s at %s)", r.Path, r.At)
		}
		return fmt.Sprintf("no residency class applies and the policy's default is deny (%s at %s)", r.Path, r.At)
	case ReasonAllowed:
		return fmt.Sprintf("class %s allows regions [%s] (%s at %s)", r.Class, strings.Join(r.Regions, " "), r.Path, r.At)
	case ReasonSourceRegion:
		return fmt.Sprintf("class %s allows regions [%s]; the source region %s is outside them (rule %s, %s at %s)",
			r.Class, strings.Join(r.Regions, " "), orDash(sourceRegion), r.ID, r.Path, r.At)
	case ReasonDestinationRegion:
		return fmt.Sprintf("class %s allows regions [%s]; %s is in region %s (rule %s, %s at %s)",
			r.Class, strings.Join(r.Regions, " "), c.Cluster, orDash(c.Region), r.ID, r.Path, r.At)
	case ReasonAmbiguousHeader:
		return fmt.Sprintf("header %s carries several different values and the policy classifies by it (%s at %s)",
			strings.TrimPrefix(r.ID, "header:"), r.Path, r.At)
	case ReasonUnknownHeaderValue:
		return fmt.Sprintf("header %s carries a value no class of the policy names, and unknown values are refused (spec.onUnknownValue; %s at %s)",
			strings.TrimPrefix(r.ID, "header:"), r.Path, r.At)
	case ReasonClaimsOnly:
		return fmt.Sprintf("only claims (headers, source namespace) put the flow in a class, and claims only narrow: no other class applies and the policy's default is deny (%s at %s)",
			r.Path, r.At)
	}
	return r.ID
}

func orDash(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// set is a set of up to 256 small integers (regions or classes).
type set [4]uint64

func (s *set) add(i int)      { s[i>>6] |= 1 << (uint(i) & 63) }
func (s *set) has(i int) bool { return s[i>>6]&(1<<(uint(i)&63)) != 0 }
func (s set) and(o set) set   { return set{s[0] & o[0], s[1] & o[1], s[2] & o[2], s[3] & o[3]} }
func (s set) or(o set) set    { return set{s[0] | o[0], s[1] | o[1], s[2] | o[2], s[3] | o[3]} }
func (s *set) empty() bool    { return s[0]|s[1]|s[2]|s[3] == 0 }

// orIn adds o's members to s in place. The decision path reads and
// writes a set's words one at a time, never copying a whole set, whose
// wide copies would stall on the narrow stores just made to it.
func (s *set) orIn(o *set) {
	s[0] |= o[0]
	s[1] |= o[1]
	s[2] |= o[2]
	s[3] |= o[3]
}
func (s set) each(f func(i int)) {
	for w, b := range s {
		for b != 0 {
			f(w*64 + bits.TrailingZeros64(b))
			b &= b - 1
		}
	}
}

// Classes is the set of residency classes a flow carries. The zero value
// carries none.
type Classes struct {
	bits set
	// firm are the classes of bits that a matcher reading nothing the
	// client claims applied: a services matcher, or a sources matcher
	// without a namespace. The others come only from claims (headers, the
	// source namespace, the header classes of an unreadable flow, classes
	// named by a peer), which may narrow a decision but never widen it.
	firm set
	// ambiguous is 1 + the index of a classifying header that carried
	// several different values, or 0.
	ambiguous int
	// unknown is 1 + the index of a classifying header that carried a
	// value no matcher names, or 0 (always 0 under onUnknownValue: ignore).
	unknown int
}

// Union returns the classes carried by either.
func (c Classes) Union(o Classes) Classes {
	u := Classes{bits: c.bits.or(o.bits), firm: c.firm.or(o.firm), ambiguous: c.ambiguous, unknown: c.unknown}
	if u.ambiguous == 0 {
		u.ambiguous = o.ambiguous
	}
	if u.unknown == 0 {
		u.unknown = o.unknown
	}
	return u
}

// Empty reports whether no class applies and no header was ambiguous or
// unknown.
func (c Classes) Empty() bool { return c.bits.empty() && c.ambiguous == 0 && c.unknown == 0 }

// Engine is a compiled, validated policy. It is immutable and safe for
// concurrent use; Classify and Decide allocate nothing.
type Engine struct {
	name, file, digest string
	source             []byte
	deflt              string
	regions            []string // index -> name, sorted
	regionIdx          map[string]int
	regionList         shortList  // regionIdx as a shortList, nil when the regions are too many or too long
	regionTable        *nameTable // ... else as a nameTable, nil when none was built
	groups             map[string][]string
	classes            []class
	defaultRule        *Rule
	headerKeys         []string   // canonical names of headers with a value matcher
	headerRules        []*Rule    // per headerKeys entry
	headerValues       [][]string // per headerKeys entry: the values matchers name
	ignoreUnknown      bool       // spec.onUnknownValue: ignore
	classifying        []string   // canonical names of every header any matcher reads
	unreadable         set        // classes an unreadable flow carries: a header matcher, unreadable not allow

	// The decision path's indexes (index.go), built by index.
	classMask      set                    // every class of the policy
	allowing       []set                  // per region: the classes that allow it
	svcByName      map[string][]svcRef    // services matchers with a name, by it
	svcByLabel     map[labelPair][]svcRef // ... else by their first label
	svcByNamespace map[string][]svcRef    // ... else by their namespace
	svcAny         []svcRef               // ... else (none in a valid policy)
	srcFirm        []srcRef               // sources matchers without a namespace
	srcByNamespace map[string][]srcRef    // sources matchers with one, by it
	srcFilter      nameFilter             // the keys of srcByNamespace
	hdrFilter      nameFilter             // the keys of hdrIndex
	hdrIndex       map[string]*hdrKey     // canonical header name -> what matchers say of it
	hdrTable       *nameTable             // hdrIndex as a nameTable, nil when none was built
	hdrKeys        []string               // the keys of hdrIndex
	hdrKeyRefs     []*hdrKey              // ... and their values
}

type class struct {
	name        string
	description string
	allowed     set
	allowedAs   []string // as written
	rule        *Rule
	regionOnly  bool
	services    []svcMatcher
	sources     []srcMatcher
	headers     []hdrMatcher
	// unreadable is restrict or allow for a class with header matchers,
	// "" without; unreadableAt says where that comes from.
	unreadable   string
	unreadableAt MatcherInfo
}

type svcMatcher struct {
	path, at        string
	namespace, name string
	labels          []yamlpos.Pair
}

type srcMatcher struct {
	path, at           string
	cluster, namespace string
	region             string // as written
	regions            set
	hasRegion          bool
}

type hdrMatcher struct {
	path, at string
	key      string // canonical
	value    string // trimmed; compared case-insensitively
	hasValue bool
	idx      int // with a value: the index of key in Engine.headerKeys
}

func compile(p *policy) *Engine {
	e := &Engine{name: p.name, file: p.file, digest: p.digest, source: p.source, deflt: p.deflt,
		regionIdx: map[string]int{}, groups: map[string][]string{}, ignoreUnknown: p.onUnknownValue == OnUnknownIgnore}
	names := map[string]bool{}
	for _, r := range p.regions {
		names[r.Value] = true
	}
	for _, g := range p.groups {
		var ms []string
		for _, m := range g.members {
			names[m.Value] = true
			ms = append(ms, m.Value)
		}
		sort.Strings(ms)
		e.groups[g.name] = ms
	}
	e.regions = sortedKeys(names)
	for i, r := range e.regions {
		e.regionIdx[r] = i
	}
	expand := func(name string) set {
		var s set
		if ms, ok := e.groups[name]; ok {
			for _, m := range ms {
				s.add(e.regionIdx[m])
			}
			return s
		}
		if i, ok := e.regionIdx[name]; ok {
			s.add(i)
		}
		return s
	}
	defaultAt := at(p.file, p.defaultAt)
	if p.defaultAt == nil {
		defaultAt = at(p.file, p.specAt) + " (implicit allow)"
	}
	e.defaultRule = &Rule{ID: "default", Path: "spec.default", At: defaultAt}
	headerIdx := map[string]int{}
	for _, cs := range p.classes {
		c := class{name: cs.name, description: cs.description, regionOnly: cs.catalog == CatalogRegionOnly}
		for _, a := range cs.allowed {
			c.allowed = c.allowed.or(expand(a.Value))
			c.allowedAs = append(c.allowedAs, a.Value)
		}
		c.rule = &Rule{ID: "class:" + cs.name, Class: cs.name, Path: cs.path + ".allowedRegions",
			At: at(p.file, cs.allowedNode), Regions: e.names(c.allowed)}
		for _, m := range cs.services {
			c.services = append(c.services, svcMatcher{path: m.path, at: at(p.file, m.node), namespace: m.namespace, name: m.name, labels: m.labels})
		}
		for _, m := range cs.sources {
			sm := srcMatcher{path: m.path, at: at(p.file, m.node), cluster: m.cluster, namespace: m.namespace, region: m.region}
			if m.region != "" {
				sm.regions, sm.hasRegion = expand(m.region), true
			}
			c.sources = append(c.sources, sm)
		}
		for _, m := range cs.headers {
			key := textproto.CanonicalMIMEHeaderKey(m.name)
			value := strings.Trim(m.value, headerSpace)
			if !slices.Contains(e.classifying, key) {
				e.classifying = append(e.classifying, key)
			}
			if _, seen := headerIdx[key]; !seen && m.hasValue {
				headerIdx[key] = len(e.headerKeys)
				e.headerKeys = append(e.headerKeys, key)
				e.headerRules = append(e.headerRules, &Rule{ID: "header:" + key, Path: m.path + ".name", At: at(p.file, m.node)})
				e.headerValues = append(e.headerValues, nil)
			}
			i := headerIdx[key]
			if m.hasValue && !slices.ContainsFunc(e.headerValues[i], func(v string) bool { return strings.EqualFold(v, value) }) {
				e.headerValues[i] = append(e.headerValues[i], value)
			}
			c.headers = append(c.headers, hdrMatcher{path: m.path, at: at(p.file, m.node), key: key, value: value, hasValue: m.hasValue, idx: i})
		}
		if len(c.headers) > 0 {
			c.unreadable = cs.unreadable
			c.unreadableAt = MatcherInfo{Path: cs.path + ".unreadable", At: at(p.file, cs.unreadableNode), Kind: KindUnreadable}
			if cs.unreadableNode == nil {
				c.unreadable = UnreadableRestrict
				c.unreadableAt.Path, c.unreadableAt.At = cs.path+".match.headers", at(p.file, cs.headersNode)
			}
			c.unreadableAt.Text = "the flow cannot be read and the class matches headers (unreadable: " + c.unreadable + ")"
			if c.unreadable != UnreadableAllow {
				e.unreadable.add(len(e.classes))
			}
		}
		e.classes = append(e.classes, c)
	}
	sort.Strings(e.classifying)
	e.index()
	return e
}

// AllowAll returns the engine of a gateway without a residency policy: no
// class, every flow allowed.
func AllowAll() *Engine {
	e, err := Compile("(no policy)", []byte("apiVersion: "+APIVersion+"\nkind: "+Kind+"\nmetadata: {name: none}\nspec: {default: allow}\n"))
	if err != nil {
		panic("sovereignty: built-in allow-all policy does not compile: " + err.Error())
	}
	return e
}

func (e *Engine) names(s set) []string {
	out := []string{}
	s.each(func(i int) { out = append(out, e.regions[i]) })
	return out
}

// readHeaders appends to values the value of each classifying header of h
// (by headerKeys index), and reports the first that is ambiguous and the
// first whose value no matcher names (each 1 + its index, or 0).
func (e *Engine) readHeaders(h http.Header, values []string) (_ []string, ambiguous, unknown int) {
	for i, key := range e.headerKeys {
		first, amb := headerValue(h[key])
		switch {
		case amb:
			if ambiguous == 0 {
				ambiguous = i + 1
			}
		case first != "" && unknown == 0 && !e.ignoreUnknown && !slices.ContainsFunc(e.headerValues[i], func(v string) bool { return strings.EqualFold(v, first) }):
			unknown = i + 1
		}
		values = append(values, first)
	}
	return values, ambiguous, unknown
}

// headerSpace is the optional white space around header values and list
// items (RFC 9110 5.6.3).
const headerSpace = " \t"

// hasComma reports whether s holds a comma: by a loop for a short value,
// where calling the vector search costs more than it saves.
func hasComma(s string) bool {
	if len(s) > 16 {
		return strings.IndexByte(s, ',') >= 0
	}
	for i := range len(s) {
		if s[i] == ',' {
			return true
		}
	}
	return false
}

// trimSpace is strings.Trim(s, headerSpace) without building a cutset on
// every call: it is on the decision path.
func trimSpace(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// headerValue returns the one value the fields vs of a header carry: every
// comma-separated item, trimmed, of every field; empty items are left out.
// ambiguous is true when two items differ (case-insensitively). It
// allocates nothing.
func headerValue(vs []string) (first string, ambiguous bool) {
	if len(vs) == 1 && !hasComma(vs[0]) {
		return trimSpace(vs[0]), false // one field of one item
	}
	for _, v := range vs {
		for v != "" {
			item, rest, _ := strings.Cut(v, ",")
			v = rest
			if item = trimSpace(item); item == "" {
				continue
			}
			if first == "" {
				first = item
			} else if !strings.EqualFold(item, first) {
				return first, true
			}
		}
	}
	return first, false
}

// matches reports whether any matcher of c matches f, and whether one
// that reads nothing the client claims did (firm): a services matcher or
// a sources matcher without a namespace. values are f's classifying
// header values by Engine.headerKeys index (nil without headers).
func (c *class) matches(f *Flow, values []string, src int, srcKnown bool) (hit, firm bool) {
	for i := range c.services {
		if c.services[i].matches(f) {
			return true, true
		}
	}
	for i := range c.sources {
		m := &c.sources[i]
		if (m.cluster == "" || m.cluster == f.SourceCluster) &&
			(m.namespace == "" || m.namespace == f.SourceNamespace) &&
			(!m.hasRegion || srcKnown && m.regions.has(src)) {
			if m.namespace == "" {
				return true, true
			}
			hit = true // a claimed namespace; a firm matcher may still follow
		}
	}
	if hit {
		return true, false
	}
	if f.Headers != nil {
		for i := range c.headers {
			m := &c.headers[i]
			if m.hasValue && strings.EqualFold(values[m.idx], m.value) || !m.hasValue && len(f.Headers[m.key]) > 0 {
				return true, false
			}
		}
	}
	return false, false
}

func (m *svcMatcher) matches(f *Flow) bool {
	if m.namespace != "" && m.namespace != f.Namespace || m.name != "" && m.name != f.Name {
		return false
	}
	for _, l := range m.labels {
		if v, ok := f.Labels[l.Key]; !ok || v != l.Value {
			return false
		}
	}
	return true
}

// Decide returns whether f may go to c, and the rule that decided.
func (e *Engine) Decide(f *Flow, c Candidate) Decision {
	var cls Classes
	e.classify(f, &cls)
	return e.decide(&cls, f.SourceRegion, c)
}

// ClassNames returns the names of the classes in c, in policy order.
func (e *Engine) ClassNames(c Classes) []string {
	out := []string{}
	c.bits.each(func(i int) {
		if i < len(e.classes) {
			out = append(out, e.classes[i].name)
		}
	})
	return out
}

// ClassesNamed returns the classes with the given names and the names
// this policy does not define. They are claims (what a peer says a flow
// carries): they narrow a decision, never widen it (DecideClasses).
func (e *Engine) ClassesNamed(names []string) (c Classes, unknown []string) {
next:
	for _, n := range names {
		for i := range e.classes {
			if e.classes[i].name == n {
				c.bits.add(i)
				continue next
			}
		}
		unknown = append(unknown, n)
	}
	return c, unknown
}

// AllowedRegions returns the regions a flow carrying c may touch: the
// intersection of its classes' allowed regions. restricted is false when
// c carries no class (the default decides).
func (e *Engine) AllowedRegions(c Classes) (regions []string, restricted bool) {
	if c.bits.empty() {
		return nil, false
	}
	all := set{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	c.bits.each(func(i int) {
		if i < len(e.classes) {
			all = all.and(e.classes[i].allowed)
		}
	})
	return e.names(all), true
}

// HeaderNames returns the canonical names of the headers the policy
// classifies by, sorted. The outbound gateway sends their values to the
// inbound one.
func (e *Engine) HeaderNames() []string { return e.classifying }

// Name returns metadata.name of the policy.
func (e *Engine) Name() string { return e.name }

// File returns the name the policy was compiled under.
func (e *Engine) File() string { return e.file }

// Digest returns "sha256:<hex>" of the policy document.
func (e *Engine) Digest() string { return e.digest }

// Source returns the policy document as it was compiled. Do not modify it.
func (e *Engine) Source() []byte { return e.source }

// Default returns the decision for flows no class applies to: allow or deny.
func (e *Engine) Default() string { return e.deflt }

// Regions returns every region the policy names, sorted.
func (e *Engine) Regions() []string { return append([]string(nil), e.regions...) }

// Groups returns the region groups with their members, sorted.
func (e *Engine) Groups() map[string][]string {
	out := make(map[string][]string, len(e.groups))
	for k, v := range e.groups {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// Summary describes the policy in one line.
func (e *Engine) Summary() string {
	return fmt.Sprintf("policy %s: %d class%s, %d region%s in %d group%s, default %s",
		e.name, len(e.classes), plural(len(e.classes), "es"), len(e.regions), plural(len(e.regions), "s"),
		len(e.groups), plural(len(e.groups), "s"), e.deflt)
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}

// ClassInfo describes one class for tooling.
type ClassInfo struct {
	Name        string
	Description string
	// AllowedAs lists allowedRegions as written; Allowed has groups expanded.
	AllowedAs, Allowed []string
	Catalog            string
	// Unreadable is what a flow the gateway cannot read gets from the
	// class: UnreadableRestrict (the default) or UnreadableAllow; "" for a
	// class without header matchers, which such a flow cannot reach by
	// headers.
	Unreadable string
	Rule       *Rule
	Matchers   []MatcherInfo
}

// MatcherInfo describes one matcher of a class, or why a class applies
// to an unreadable flow (Kind KindUnreadable).
type MatcherInfo struct {
	Path string // spec.classes[0].match.services[0]
	At   string // file:line:column
	Kind string // service, source, header or unreadable
	Text string // data-class=pii-eu
}

// KindUnreadable is the MatcherInfo.Kind Matched reports for a class that
// applies because the flow cannot be read and the class matches headers.
// Its Path is the class's unreadable field, or its match.headers when the
// field is not written.
const KindUnreadable = "unreadable"

// Class returns the description of the named class.
func (e *Engine) Class(name string) (ClassInfo, bool) {
	for i := range e.classes {
		if e.classes[i].name == name {
			return e.classInfo(i), true
		}
	}
	return ClassInfo{}, false
}

// ClassList describes every class in policy order.
func (e *Engine) ClassList() []ClassInfo {
	out := make([]ClassInfo, len(e.classes))
	for i := range e.classes {
		out[i] = e.classInfo(i)
	}
	return out
}

func (e *Engine) classInfo(i int) ClassInfo {
	c := &e.classes[i]
	ci := ClassInfo{Name: c.name, Description: c.description, AllowedAs: c.allowedAs, Allowed: c.rule.Regions, Catalog: CatalogAll,
		Unreadable: c.unreadable, Rule: c.rule}
	if c.regionOnly {
		ci.Catalog = CatalogRegionOnly
	}
	for _, m := range c.services {
		ci.Matchers = append(ci.Matchers, MatcherInfo{Path: m.path, At: m.at, Kind: "service", Text: m.text()})
	}
	for _, m := range c.sources {
		ci.Matchers = append(ci.Matchers, MatcherInfo{Path: m.path, At: m.at, Kind: "source", Text: m.text()})
	}
	for _, m := range c.headers {
		ci.Matchers = append(ci.Matchers, MatcherInfo{Path: m.path, At: m.at, Kind: "header", Text: m.text()})
	}
	return ci
}

// Matched returns, for each class that applies to f, the matchers that
// matched it; a class that applies because f is Unreadable reports a
// MatcherInfo of Kind KindUnreadable.
func (e *Engine) Matched(f *Flow) map[string][]MatcherInfo {
	out := map[string][]MatcherInfo{}
	var values []string
	if f.Headers != nil {
		values, _, _ = e.readHeaders(f.Headers, nil)
	}
	if f.Unreadable {
		e.unreadable.each(func(i int) {
			c := &e.classes[i]
			out[c.name] = append(out[c.name], c.unreadableAt)
		})
	}
	src, srcKnown := e.regionIdx[f.SourceRegion]
	for i := range e.classes {
		c := &e.classes[i]
		for _, m := range c.services {
			if m.matches(f) {
				out[c.name] = append(out[c.name], MatcherInfo{Path: m.path, At: m.at, Kind: "service", Text: m.text()})
			}
		}
		for _, m := range c.sources {
			one := class{sources: []srcMatcher{m}}
			if hit, _ := one.matches(f, values, src, srcKnown); hit {
				out[c.name] = append(out[c.name], MatcherInfo{Path: m.path, At: m.at, Kind: "source", Text: m.text()})
			}
		}
		for _, m := range c.headers {
			one := class{headers: []hdrMatcher{m}}
			if hit, _ := one.matches(f, values, src, srcKnown); hit {
				out[c.name] = append(out[c.name], MatcherInfo{Path: m.path, At: m.at, Kind: "header", Text: m.text()})
			}
		}
	}
	return out
}

func (m svcMatcher) text() string {
	parts := setFields("namespace", m.namespace, "name", m.name)
	for _, l := range m.labels {
		parts = append(parts, l.Key+"="+l.Value)
	}
	return strings.Join(parts, ",")
}

func (m srcMatcher) text() string {
	return strings.Join(setFields("cluster", m.cluster, "region", m.region, "namespace", m.namespace), ",")
}

// setFields renders the pairs of kv (name, value, name, value...) whose
// value is set as name=value, in order.
func setFields(kv ...string) []string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			parts = append(parts, kv[i]+"="+kv[i+1])
		}
	}
	return parts
}

func (m hdrMatcher) text() string {
	if !m.hasValue {
		return m.key + " (any value)"
	}
	return m.key + ": " + m.value
}
