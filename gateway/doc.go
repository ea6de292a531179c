// Package gateway is the strait gateway process: its config, the wiring of
// the catalog, the routing state, residency, the tunnels and the admin
// API, the listeners and their connection handlers (inbound from other
// gateways; CONNECT, import and passthrough ports for local workloads),
// and one lifecycle.
//
// Invariants:
//
//   - One lifecycle (Gateway.components): components start in order and
//     stop in reverse; a failed start, Shutdown (drain) and Kill walk the
//     same list, so a failed start leaves nothing listening and no
//     goroutine behind (TestStartRollsBackWhenAComponentFails).
//   - A flow is sent only to a candidate the residency policy allows, on
//     the outbound side (route.NewPlan) and again on the inbound side
//     (decideInbound), where the source is the peer's verified
//     certificate and the peer's facts can only narrow
//     (TestDecideInbound, TestPlanAgainstOracle).
//   - Every outbound connection to another gateway is pinned: its
//     certificate must name the cluster and region the catalog lists at
//     the address, or it is closed unused, counted, logged and audited,
//     and the flow moves on to the next allowed candidate
//     (tunnel.TestPoolPinsPeers, lab.TestPinnedPeers).
//   - Without a policy in force every flow is refused; a refused update
//     leaves the last good policy in force.
//   - Nothing is retried once a peer answered OK; bytes kept for early
//     data go elsewhere only when the peer sent nothing on.
//   - Every listener holds at most its budget (limits.listeners.*); the
//     excess is closed as soon as it is accepted, a TLS handshake on the
//     data, Raft or control port ends within limits.handshakeTimeout, and
//     a request head costs at most its limit (64 KiB), so a flood of idle
//     connections or a huge head bounds the gateway's open files and
//     memory (TestIdleFloodOfEveryPort, TestListenerBudgets,
//     TestHugeRequestHeadCostsTheLimit).
//   - Fault mode (faults.go, gateway/fault) changes nothing unless
//     faults.enabled: no listener, dialler or transport is wrapped.
//     With it, every fault ends with its lease or with the gateway, and
//     the admin and probe listeners stay out of every fault
//     (TestFaultAdminAPIOff, lab.TestFaultLeaseExpiryUndoes).
//   - Tracing (tracing.go) never changes what a flow does: off (no
//     Options.TracerProvider) it allocates nothing and sends no trace
//     context (TestTracingOff); on, a flow that crosses gateways is one
//     trace (lab.TestTraceAcrossGateways), its spans carry names, never
//     header values or payload, and a peer's trace context is used for
//     nothing else (wire.TestTraceContextIsOnlyForTracing).
//
// Decisions live in gateway/route, byte formats in gateway/wire, tunnels
// in gateway/tunnel and the admin API in gateway/admin; this package only
// moves bytes and wires them together.
package gateway
