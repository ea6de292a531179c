// Package route is the pure decision of where a connection goes: the
// planner (NewPlan: candidate clusters by locality rank and failover
// priority, each with the residency decision), the failover priority
// table, the selector (weighted least-request with two random choices
// within a rank) and passive outlier ejection. It does no I/O: inputs are
// immutable snapshots (the catalog's, the compiled policy), time comes
// from an injected Clock, randomness from an injectable source. The data
// plane (package gateway) and the residency tooling (WhatIf: strait policy
// explain, diff, simulate) call the same functions, so the tooling shows
// what the gateways do.
//
// Invariants:
//
//   - The selector only permutes what the planner allowed; ejection
//     reorders, it never removes (TestSelectorOrderIsAPermutation).
//   - A candidate the policy forbids is never in Plan.Allowed, whatever its
//     rank, health or failover priority (TestPlanAgainstOracle in package
//     gateway checks the planner against an independent oracle).
//   - Locality ranks come before failover priority, which only orders the
//     clusters beyond the local region (TestPlanOrdersFailoverAfterLocality).
package route
