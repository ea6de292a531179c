package sovereignty

import "math/bits"

// The straightforward implementation of classification and decision, kept
// as the oracle the indexed one (index.go) is compared with.

// refClassify is Classify as it was before the indexes (index.go): it
// walks every matcher of every class, and ignores Flow.Service. It is
// the oracle of TestFastPathAgreesWithReference. A class applies when any
// one of its matchers matches; within a matcher every field must match.
// A flow that is Unreadable also carries every class with a header
// matcher whose unreadable is not allow. Classes that only claims put the
// flow in (header matchers, source matchers with a namespace, the
// unreadable rule) are told apart from the others: they only narrow.
func (e *Engine) refClassify(f *Flow) Classes {
	var c Classes
	// The value of each classifying header, read once for every class.
	var stack [64]string
	var values []string
	if f.Headers != nil {
		values, c.ambiguous, c.unknown = e.readHeaders(f.Headers, stack[:0])
	}
	if f.Unreadable {
		c.bits = e.unreadable
	}
	src, srcKnown := e.regionIdx[f.SourceRegion]
	for i := range e.classes {
		if hit, firm := e.classes[i].matches(f, values, src, srcKnown); hit {
			c.bits.add(i)
			if firm {
				c.firm.add(i)
			}
		}
	}
	return c
}

// refDecideClasses is DecideClasses as it was before the region bitsets:
// it walks the classes. It decides for a flow already classified: every class must
// allow the source region and the candidate's region. A flow with no
// class gets the policy's default. Claims only narrow: the decision is
// the one without the classes that only claims put the flow in, and the
// one with them. So under default deny a flow whose classes all come from
// claims is refused (ReasonClaimsOnly) even where they would allow it,
// and under default allow a claim can still keep a flow in its regions.
func (e *Engine) refDecideClasses(cls Classes, sourceRegion string, c Candidate) Decision {
	if cls.ambiguous > 0 && cls.ambiguous <= len(e.headerRules) {
		return Decision{Reason: ReasonAmbiguousHeader, Rule: e.headerRules[cls.ambiguous-1]}
	}
	if cls.unknown > 0 && cls.unknown <= len(e.headerRules) {
		return Decision{Reason: ReasonUnknownHeaderValue, Rule: e.headerRules[cls.unknown-1]}
	}
	if cls.bits.empty() {
		return Decision{Allow: e.deflt != "deny", Reason: ReasonDefault, Rule: e.defaultRule}
	}
	src, srcOK := e.regionIdx[sourceRegion]
	dst, dstOK := e.regionIdx[c.Region]
	first := -1
	for w, b := range cls.bits {
		for b != 0 {
			i := w*64 + bits.TrailingZeros64(b)
			b &= b - 1
			if i >= len(e.classes) {
				continue
			}
			if !srcOK || !e.classes[i].allowed.has(src) {
				return Decision{Reason: ReasonSourceRegion, Rule: e.classes[i].rule}
			}
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		return Decision{Allow: e.deflt != "deny", Reason: ReasonDefault, Rule: e.defaultRule}
	}
	for w, b := range cls.bits {
		for b != 0 {
			i := w*64 + bits.TrailingZeros64(b)
			b &= b - 1
			if i < len(e.classes) && (!dstOK || !e.classes[i].allowed.has(dst)) {
				return Decision{Reason: ReasonDestinationRegion, Rule: e.classes[i].rule}
			}
		}
	}
	// Every class allows the flow. Without the claimed ones the firm
	// classes (a subset, so they allow it too) decide, or, with none, the
	// default.
	if cls.firm.empty() && e.deflt == "deny" {
		return Decision{Reason: ReasonClaimsOnly, Rule: e.defaultRule}
	}
	return Decision{Allow: true, Reason: ReasonAllowed, Rule: e.classes[first].rule}
}

// ReferenceDecide decides as Decide did before the indexes, for the
// benchmark to compare in one run (TestBenchResidencyDecide).
func (e *Engine) ReferenceDecide(f *Flow, c Candidate) Decision {
	return e.refDecideClasses(e.refClassify(f), f.SourceRegion, c)
}
