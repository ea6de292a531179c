// Package sovereignty owns data residency: region policy files, their
// compiler, the decision engine and the audit trail.
//
// A policy (apiVersion strait.io/v1, kind ResidencyPolicy) names region
// groups and residency classes. A class applies to a flow when any one of
// its matchers matches (destination service, source, or HTTP header;
// within one matcher every field must match). A flow carrying classes may
// only have its source and its destination inside the intersection of
// their allowed regions; a flow carrying none gets the policy's default.
// docs/residency.md is the reference.
//
// Invariants, and the tests that prove them:
//
//   - Compile accepts a document only when it has no problem at all, and
//     then reports every problem at once, each with file:line:column and
//     the field path (TestPolicyProblems). It never panics on any input and
//     bounds the work a document can cause: aliases are refused, size and
//     node count are capped (FuzzCompile).
//   - A policy in which two classes can match one flow while allowing
//     disjoint regions does not compile: such flows would be refused
//     whatever the topology (TestPolicyProblems).
//   - An Engine is immutable and safe for concurrent use
//     (TestEngineConcurrentUse). Classify, Decide and DecideClasses
//     allocate nothing (TestDecideAllocatesNothing) and
//     fail closed: a region the policy does not know is in no class's
//     allowed set, and a classifying header carrying two different values
//     is refused rather than classified one way (TestDecide).
//   - A flow the gateway cannot read (Flow.Unreadable, no headers) carries
//     every class with a header matcher unless the class says
//     unreadable: allow, so a marker the gateway cannot see never lets a
//     flow out of its class's regions (TestUnreadable).
//   - Claims only narrow: a class that only claims apply (header
//     matchers, source matchers with a namespace, the unreadable rule,
//     classes a peer names) can restrict a flow but never allow one the
//     policy would refuse without it, so under default deny a flow whose
//     classes all come from claims is refused (TestClaimsOnlyNarrow;
//     gateway.TestPlanAgainstOracle against its own model).
//   - The indexed decision path (index.go: service classes precomputed
//     per service, matchers indexed by namespace and header name, region
//     bitsets) gives exactly the classes and decisions of the walk over
//     every matcher it replaced, kept as the oracle in reference_test.go
//     (TestFastPathAgreesWithReference, over random policies and flows).
//   - Every Decision names the Rule that made it, with its field path and
//     position in the policy file (TestDecide).
//   - CatalogRegions restricts a service only through classes with
//     catalog: region-only that match it by a services matcher, and
//     intersects several (TestCatalogRegions).
//   - The Auditor writes one whole JSON object per line, rotates by size
//     without splitting a record, and counts what it writes
//     (TestAuditRecordsAreJSONLines, TestAuditFileRotates).
//
// Enforcement lives in the gateway: the outbound gateway removes the
// clusters a flow may not reach before it chooses one, and refuses the flow
// when no allowed cluster is healthy; the inbound gateway decides again
// with the source region from the peer's certificate
// (gateway.TestPlanAgainstOracle proves the gateway's choice against an
// oracle written without this package).
package sovereignty
