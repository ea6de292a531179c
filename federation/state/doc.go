// Package state is the federation's routing state: a hashicorp/raft state
// machine (Store) replicated to every gateway, a few voters and every
// other gateway a non-voter, with its records, snapshots, mTLS Raft
// transport, log store, and the gRPC control API server and client (its
// messages are package statev1, generated from
// proto/strait/state/v1/control.proto; Go callers see only Control).
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
//   - The Raft log (raft-wal, used as it is) survives truncated tails
//     across restarts (TestLogStoreMatchesModel).
//   - A data directory written before raft-wal v0.4.1, whose log was in a
//     format of its own, opens as the same log, term and vote, migrated
//     once and crash-safely; a directory in neither format is refused
//     with an error naming it, never misread (TestOldLogIsMigrated,
//     TestOldLogMigrationResumes, TestOpenRefusesUnknownOldLog).
//   - Every request that needs the leader goes through one helper that
//     answers on the leader or forwards to it (onLeader).
//   - Every field of the control API's Go types crosses the wire
//     (TestControlWireRoundTrip), and the committed generated code is what
//     the .proto gives (TestGeneratedCodeIsCurrent).
//   - The control server's health is SERVING while it serves and
//     NOT_SERVING once it stops; a graceful stop ends health watches
//     rather than waiting for them (TestControlHealth).
//   - Raft sees an inbound connection only once its mTLS handshake
//     finished, within Options.HandshakeTimeout; a silent or foreign client
//     costs a goroutine and a socket until then, never Raft's buffers
//     (TestRaftStreamHandshakesBeforeRaft).
//   - A join token obtains one certificate, for its cluster, region and
//     role, before it expires by the leader's time of the entry that uses
//     it; the state machine decides, so two racing requests get one
//     certificate (TestCATokenSingleUseUnderRace,
//     TestFSMDecidesTokenUseByEntryTime, TestCATokenBoundToClusterRegionRole).
//     A caller with a certificate renews exactly its own identity
//     (TestCASignRefusesOtherIdentities).
//   - A client without a certificate reaches SignCertificate and nothing
//     else on the control port (TestControlNeedsACertificate).
//   - The control server's limits are explicit: a request over
//     maxControlRecv is refused unread, a connection carries at most
//     maxControlStreams calls at once (TestControlServerLimits).
package state
