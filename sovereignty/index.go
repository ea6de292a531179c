package sovereignty

import (
	"math/bits"
	"net/http"
	"strings"
)

// The decision path in two halves (docs/residency.md, "How a decision is
// made fast"). What depends only on the destination service is a
// ServiceClasses, computed when the catalog changes and carried by the
// flow; everything else is looked up per flow through indexes built at
// compile time, so a flow only looks at its own headers and its own
// source namespace, and the decision itself is a few operations on
// bitsets. TestFastPathAgreesWithReference compares it with the
// straightforward matcher walk over random policies and flows.

// ServiceClasses is the set of classes a destination service is in by the
// services matchers of one Engine's policy. The gateway computes it when
// its catalog or policy changes (Engine.ServiceClasses, once per label
// set the service is exported with, joined with Union) and hands it to
// every flow to that service in Flow.Service, so that a decision only
// looks at what the flow itself carries. The zero value belongs to no
// engine and is never used.
type ServiceClasses struct {
	eng  *Engine
	bits set
}

// For reports whether s was computed by e, so that a flow carrying it is
// decided without walking the services matchers.
func (s ServiceClasses) For(e *Engine) bool { return e != nil && s.eng == e }

// Union returns the classes of a service exported with both label sets.
// Both must come from the same Engine; a zero ServiceClasses is the
// identity, and sets of different engines make a result no engine uses.
func (s ServiceClasses) Union(o ServiceClasses) ServiceClasses {
	switch {
	case s.eng == nil:
		return o
	case o.eng == nil:
		return s
	case s.eng != o.eng:
		return ServiceClasses{}
	}
	return ServiceClasses{eng: s.eng, bits: s.bits.or(o.bits)}
}

// ServiceClasses returns the classes whose services matchers match service
// namespace/name with labels. It looks only at the matchers that can
// match: those naming the service's name, its namespace, or one of its
// labels. A flow is in these classes firmly: nothing in them is claimed.
func (e *Engine) ServiceClasses(namespace, name string, labels map[string]string) ServiceClasses {
	s := ServiceClasses{eng: e}
	f := Flow{Namespace: namespace, Name: name, Labels: labels}
	check := func(refs []svcRef) {
		for _, r := range refs {
			if !s.bits.has(r.class) && r.m.matches(&f) {
				s.bits.add(r.class)
			}
		}
	}
	check(e.svcAny)
	if refs, ok := e.svcByName[name]; ok {
		check(refs)
	}
	if refs, ok := e.svcByNamespace[namespace]; ok {
		check(refs)
	}
	if len(e.svcByLabel) > 0 {
		for k, v := range labels {
			if refs, ok := e.svcByLabel[labelPair{k, v}]; ok {
				check(refs)
			}
		}
	}
	return s
}

// svcRef is one services matcher and the class it puts a service in.
type svcRef struct {
	class int
	m     *svcMatcher
}

type labelPair struct{ key, value string }

// srcRef is one sources matcher with a namespace, indexed by it.
type srcRef struct {
	class     int
	cluster   string
	regions   set
	hasRegion bool
}

// nameFilter tells cheaply that a string is not one of a few names: by
// its length and its last byte, before a map lookup hashes it. Most
// headers of a request are ones no matcher reads (Accept, User-Agent),
// and most source namespaces are named by no matcher.
type nameFilter struct {
	lens uint64 // bit n: a name of length n; bit 63: of length 63 or more
	last set    // the last bytes of the names
}

func (f *nameFilter) add(s string) {
	f.lens |= 1 << min(len(s), 63)
	if s != "" {
		f.last.add(int(s[len(s)-1]))
	}
}

// mayHave is false when s is certainly none of the names added.
func (f *nameFilter) mayHave(s string) bool {
	if f.lens&(1<<min(len(s), 63)) == 0 {
		return false
	}
	return s == "" || f.last.has(int(s[len(s)-1]))
}

// hdrKey is everything the policy says about one header name.
type hdrKey struct {
	// idx is the header's index in Engine.headerKeys (its rule and its
	// place among ambiguous or unknown headers), -1 when no matcher of
	// it names a value.
	idx int
	// present are the classes of matchers without a value: the header
	// being there is enough.
	present set
	// values are the values matchers name, distinct case-insensitively,
	// and byValue the classes of each.
	values  []string
	byValue []set
	// exact finds a value as written, when there are enough of them
	// (exactValues) for a table to beat comparing each.
	exact *nameTable
}

// exactValues is how many values a header's matchers name before its
// values are put in a nameTable.
const exactValues = 4

// index builds what the decision path looks up: matchers by what they
// read, and per region the classes that allow it.
func (e *Engine) index() {
	e.svcByName = map[string][]svcRef{}
	e.svcByNamespace = map[string][]svcRef{}
	e.svcByLabel = map[labelPair][]svcRef{}
	e.srcByNamespace = map[string][]srcRef{}
	e.hdrIndex = map[string]*hdrKey{}
	e.allowing = make([]set, len(e.regions))
	for i := range e.classes {
		c := &e.classes[i]
		e.classMask.add(i)
		c.allowed.each(func(r int) { e.allowing[r].add(i) })
		for j := range c.services {
			m := &c.services[j]
			r := svcRef{class: i, m: m}
			// Every field of a matcher must match, so any one of them
			// finds it; the name is the most selective.
			switch {
			case m.name != "":
				e.svcByName[m.name] = append(e.svcByName[m.name], r)
			case len(m.labels) > 0:
				k := labelPair{m.labels[0].Key, m.labels[0].Value}
				e.svcByLabel[k] = append(e.svcByLabel[k], r)
			case m.namespace != "":
				e.svcByNamespace[m.namespace] = append(e.svcByNamespace[m.namespace], r)
			default:
				e.svcAny = append(e.svcAny, r)
			}
		}
		for j := range c.sources {
			m := &c.sources[j]
			if m.namespace == "" {
				e.srcFirm = append(e.srcFirm, srcRef{class: i, cluster: m.cluster, regions: m.regions, hasRegion: m.hasRegion})
				continue
			}
			e.srcByNamespace[m.namespace] = append(e.srcByNamespace[m.namespace], srcRef{class: i, cluster: m.cluster, regions: m.regions, hasRegion: m.hasRegion})
			e.srcFilter.add(m.namespace)
		}
		for j := range c.headers {
			m := &c.headers[j]
			k := e.hdrIndex[m.key]
			if k == nil {
				k = &hdrKey{idx: -1}
				e.hdrIndex[m.key] = k
				e.hdrFilter.add(m.key)
			}
			if !m.hasValue {
				k.present.add(i)
				continue
			}
			k.idx = m.idx
			v := k.value(m.value)
			if v < 0 {
				v = len(k.values)
				k.values = append(k.values, m.value)
				k.byValue = append(k.byValue, set{})
			}
			k.byValue[v].add(i)
		}
	}
	for _, key := range sortedKeys(e.hdrIndex) {
		k := e.hdrIndex[key]
		if len(k.values) >= exactValues {
			k.exact = newNameTable(k.values)
		}
		e.hdrKeys = append(e.hdrKeys, key)
		e.hdrKeyRefs = append(e.hdrKeyRefs, k)
	}
	e.hdrTable = newNameTable(e.hdrKeys)
	e.regionList = newShortList(e.regions)
	if e.regionList == nil {
		e.regionTable = newNameTable(e.regions)
	}
}

// header returns what the policy says of the header name, by the
// table when there is one.
func (e *Engine) header(name string) (*hdrKey, bool) {
	if e.hdrTable != nil {
		if i := e.hdrTable.find(name); i >= 0 {
			return e.hdrKeyRefs[i], true
		}
		return nil, false
	}
	k, ok := e.hdrIndex[name]
	return k, ok
}

// value returns the index in k.values of the value v names
// case-insensitively, or -1. Case folding is an equivalence, so at most
// one distinct value matches.
func (k *hdrKey) value(v string) int {
	if k.exact != nil {
		if i := k.exact.find(v); i >= 0 {
			return i // as written, the common case
		}
	}
	for i, w := range k.values {
		if sameName(v, w) || strings.EqualFold(v, w) {
			return i
		}
	}
	return -1
}

// Classify returns the classes that apply to f. A class applies when any
// one of its matchers matches; within a matcher every field must match.
// A flow that is Unreadable also carries every class with a header
// matcher whose unreadable is not allow. Classes that only claims put the
// flow in (header matchers, source matchers with a namespace, the
// unreadable rule) are told apart from the others: they only narrow.
//
// When f.Service was computed by e, it stands for the services matchers
// and Namespace, Name and Labels are not read.
func (e *Engine) Classify(f *Flow) Classes {
	var c Classes
	e.classify(f, &c)
	return c
}

// classify sets c, which is zero, to the classes of f (Classify).
func (e *Engine) classify(f *Flow, c *Classes) {
	if f.Service.eng == e && e != nil { // f.Service.For(e), without copying it
		c.firm = f.Service.bits
	} else {
		c.firm = e.ServiceClasses(f.Namespace, f.Name, f.Labels).bits
	}
	src := srcRegion{e: e, name: f.SourceRegion}
	for i := range e.srcFirm {
		if r := &e.srcFirm[i]; r.matches(f, &src) {
			c.firm.add(r.class)
		}
	}
	c.bits = c.firm
	if f.SourceNamespace != "" && e.srcFilter.mayHave(f.SourceNamespace) {
		for _, r := range e.srcByNamespace[f.SourceNamespace] {
			if r.matches(f, &src) {
				c.bits.add(r.class)
			}
		}
	}
	if f.Unreadable {
		c.bits.orIn(&e.unreadable)
	}
	if f.Headers != nil {
		e.classifyHeaders(f.Headers, c)
	}
}

func (r *srcRef) matches(f *Flow, src *srcRegion) bool {
	if r.cluster != "" && r.cluster != f.SourceCluster {
		return false
	}
	if !r.hasRegion {
		return true
	}
	i, ok := src.index()
	return ok && r.regions.has(i)
}

// srcRegion is the index of a flow's source region, looked up once and
// only when a matcher asks for it.
type srcRegion struct {
	e          *Engine
	name       string
	i          int
	known, got bool
}

func (s *srcRegion) index() (int, bool) {
	if !s.got {
		s.i, s.known = s.e.region(s.name)
		s.got = true
	}
	return s.i, s.known
}

// classifyHeaders adds to c the classes h's headers put the flow in, and
// the first (by Engine.headerKeys) ambiguous header and header with a
// value no matcher names. It reads only the headers both h and the
// policy know: it walks h, or looks up each name the policy reads,
// whichever costs less (rangeCostsMore).
func (e *Engine) classifyHeaders(h http.Header, c *Classes) {
	e.classifyHeadersBy(h, c, !rangeCostsMore(len(h), len(e.hdrKeys)))
}

// classifyHeadersBy is classifyHeaders walking h (walk) or looking up
// each name the policy reads: both give the same classes.
func (e *Engine) classifyHeadersBy(h http.Header, c *Classes, walk bool) {
	var amb, unk int // 1 + index, smallest seen
	if walk {
		for name, vs := range h {
			if !e.hdrFilter.mayHave(name) {
				continue
			}
			if k, ok := e.header(name); ok {
				e.classifyHeader(k, vs, c, &amb, &unk)
			}
		}
	} else {
		for i, name := range e.hdrKeys {
			if vs, ok := h[name]; ok {
				e.classifyHeader(e.hdrKeyRefs[i], vs, c, &amb, &unk)
			}
		}
	}
	c.ambiguous, c.unknown = amb, unk
}

// rangeCostsMore reports whether walking a header map of n entries costs
// more than k lookups in it. Measured on the 2-core machines of
// docs/testing.md: a lookup about 15 ns; a walk about 60 ns plus 10 per
// entry up to eight entries (one group of Go's map) and about 20 per
// entry beyond, so that a policy reading one or two header names looks
// them up in a request of any size, and one reading fifty walks the few
// headers a request has.
func rangeCostsMore(n, k int) bool {
	walk := 60 + 10*n
	if n > 8 {
		walk = 20 * n
	}
	return 15*k < walk
}

// classifyHeader adds the classes of one header's fields vs, and lowers
// amb or unk to 1 + its index when it is ambiguous or unknown.
func (e *Engine) classifyHeader(k *hdrKey, vs []string, c *Classes, amb, unk *int) {
	if len(vs) > 0 {
		c.bits.orIn(&k.present)
	}
	if k.idx < 0 {
		return
	}
	first, ambiguous := headerValue(vs)
	if first == "" {
		return
	}
	v := k.value(first)
	if v >= 0 {
		c.bits.orIn(&k.byValue[v])
	}
	switch {
	case ambiguous:
		if *amb == 0 || k.idx+1 < *amb {
			*amb = k.idx + 1
		}
	case v < 0 && !e.ignoreUnknown:
		if *unk == 0 || k.idx+1 < *unk {
			*unk = k.idx + 1
		}
	}
}

// DecideClasses decides for a flow already classified: every class must
// allow the source region and the candidate's region. A flow with no
// class gets the policy's default. Claims only narrow: the decision is
// the one without the classes that only claims put the flow in, and the
// one with them. So under default deny a flow whose classes all come from
// claims is refused (ReasonClaimsOnly) even where they would allow it,
// and under default allow a claim can still keep a flow in its regions.
//
// The first class in policy order that forbids the source region is
// cited, else the first that forbids the candidate's, else the first
// class of the flow.
func (e *Engine) DecideClasses(cls Classes, sourceRegion string, c Candidate) Decision {
	return e.decide(&cls, sourceRegion, c)
}

func (e *Engine) decide(cls *Classes, sourceRegion string, c Candidate) Decision {
	if cls.ambiguous > 0 && cls.ambiguous <= len(e.headerRules) {
		return Decision{Reason: ReasonAmbiguousHeader, Rule: e.headerRules[cls.ambiguous-1]}
	}
	if cls.unknown > 0 && cls.unknown <= len(e.headerRules) {
		return Decision{Reason: ReasonUnknownHeaderValue, Rule: e.headerRules[cls.unknown-1]}
	}
	bits, mask := &cls.bits, &e.classMask
	if bits[0]&mask[0]|bits[1]&mask[1]|bits[2]&mask[2]|bits[3]&mask[3] == 0 {
		return Decision{Allow: e.deflt != "deny", Reason: ReasonDefault, Rule: e.defaultRule}
	}
	src, srcOK := e.region(sourceRegion)
	dst, dstOK := e.region(c.Region)
	if srcOK && dstOK {
		// The common case in one pass over the words: every class allows
		// both regions.
		a, d := &e.allowing[src], &e.allowing[dst]
		var out uint64
		for w := range bits {
			out |= bits[w] & mask[w] &^ (a[w] & d[w])
		}
		if out == 0 {
			return e.allowed(cls)
		}
	}
	b := cls.bits.and(e.classMask)
	if !srcOK {
		return Decision{Reason: ReasonSourceRegion, Rule: e.classes[b.first()].rule}
	} else if out := b.andNot(e.allowing[src]); !out.empty() {
		return Decision{Reason: ReasonSourceRegion, Rule: e.classes[out.first()].rule}
	}
	if !dstOK {
		return Decision{Reason: ReasonDestinationRegion, Rule: e.classes[b.first()].rule}
	} else if out := b.andNot(e.allowing[dst]); !out.empty() {
		return Decision{Reason: ReasonDestinationRegion, Rule: e.classes[out.first()].rule}
	}
	return e.allowed(cls)
}

// allowed decides for a flow every class of which allows the source and
// the candidate's region. Without the claimed ones the firm classes (a
// subset, so they allow it too) decide, or, with none, the default. The
// rule cited is the flow's first class.
func (e *Engine) allowed(cls *Classes) Decision {
	if cls.firm.empty() && e.deflt == "deny" {
		return Decision{Reason: ReasonClaimsOnly, Rule: e.defaultRule}
	}
	for w := range cls.bits {
		if x := cls.bits[w] & e.classMask[w]; x != 0 {
			return Decision{Allow: true, Reason: ReasonAllowed, Rule: e.classes[w*64+bits.TrailingZeros64(x)].rule}
		}
	}
	return Decision{Reason: ReasonDefault, Rule: e.defaultRule} // not reached: decide saw a class
}

// region returns the index of the region name in e.regions.
func (e *Engine) region(name string) (int, bool) {
	if e.regionList != nil {
		i := e.regionList.find(name)
		return i, i >= 0
	}
	if e.regionTable != nil {
		i := e.regionTable.find(name)
		return i, i >= 0
	}
	i, ok := e.regionIdx[name]
	return i, ok
}

func (s set) andNot(o set) set {
	return set{s[0] &^ o[0], s[1] &^ o[1], s[2] &^ o[2], s[3] &^ o[3]}
}

// first returns the smallest member of a set that is not empty.
func (s set) first() int {
	for w, b := range s {
		if b != 0 {
			return w*64 + bits.TrailingZeros64(b)
		}
	}
	return -1
}
