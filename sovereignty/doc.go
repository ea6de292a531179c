// Package sovereignty owns data residency: region policy files, their
// compiler, the decision engine and the audit trail.
//
// The engine is a pure function compiled from a validated policy,
// Decide(flow, candidate) -> allow | deny(rule), used by the outbound
// gateway to filter candidate clusters and again by the inbound gateway.
// Residency is never relaxed by a fault: without a policy the last
// validated one stays in force, and a flow with no allowed healthy
// destination is refused, never sent elsewhere.
package sovereignty
