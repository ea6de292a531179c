// Package federation is how gateways find each other, learn what every
// cluster exports, and agree on one set of routing rules.
//
// Membership runs on hashicorp/memberlist. Each gateway owns exactly one
// catalog entry (its cluster's exported services with ports, labels and
// endpoint counts) and is the only writer of it. Invariants:
//
//   - An entry carries a version that its owner raises on every change and
//     that never goes backwards across restarts (it starts at the wall
//     clock in nanoseconds); a receiver keeps the entry with the higher
//     version, so an older copy arriving late never overwrites a newer one.
//   - State is O(clusters x services): no remote endpoint address is ever
//     gossiped, only counts and the owning gateway's data-plane address.
//   - Decoding a gossip message never panics: malformed or oversized input
//     is an error (FuzzDecodeMessage).
//   - When memberlist declares a gateway dead or gone, its entry stays
//     (static stability: routing keeps the last known data) but is marked
//     unreachable, and consumers are told through Watch.
//
// Changes go out at once as a broadcast and as direct reliable sends to
// every member; memberlist's push/pull full-state exchange is the
// anti-entropy that repairs anything lost.
//
// The routing state (Store) is a hashicorp/raft state machine replicated
// to every gateway: a few voters, every other gateway a non-voter.
// Invariants:
//
//   - Linearizable: a write is acknowledged once committed by a quorum and
//     applied; a consistent read sees every write acknowledged before it
//     began. No acknowledged write is lost through partitions, lost or
//     delayed messages, or voters killed and restarted from disk
//     (TestJepsenLinearizable checks the history with porcupine).
//   - Every record version is the Raft index of the change that wrote it.
//   - A write retried with the same request ID applies once and answers
//     with its first index (TestStateIdempotentRetries, FSM dedup over the
//     last 10,000 request IDs).
//   - Payloads are checked before they reach the log; applying a log entry
//     checks only what every gateway version agrees on, so replicas never
//     diverge over a validator (TestStateRejectsBadPayloads,
//     FuzzDecodeCommand, FuzzValidatePayload).
//   - A corrupted, truncated or foreign snapshot is refused, never
//     partially applied (TestStateSnapshotRestoreAndCompaction,
//     FuzzDecodeSnapshot).
//   - What a gateway routes on never goes back: a gateway restarting
//     without a quorum routes on the state it last applied, from its own
//     disk, and says it may be stale (TestStateStaticStability).
//   - The Raft log survives truncated tails across restarts
//     (TestLogStoreMatchesModel).
package federation
