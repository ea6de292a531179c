// Package fault is a gateway's fault mode: failover drills (strait drill
// run) inject faults into real gateways through the admin API, and this
// package holds them and makes the gateway's sockets behave as the faults
// say.
//
// Invariants:
//
//   - Off unless faults.enabled: a Controller made with Enabled false
//     refuses every injection (ErrOff), and with no fault in force every
//     wrapper (Conn, Listener, Dial, Transport) passes through after one
//     atomic pointer load, so they change nothing.
//   - Every fault has a lease (at most Config.MaxLease). A fault whose
//     lease runs out without a renewal is undone by itself, so a drill
//     process that dies leaves nothing behind (TestFaultLeaseExpires).
//   - Peers are matched by cluster as the gateway verified it: the
//     certificate of an inbound mTLS connection (SetPeer after the
//     handshake), the catalog's signed entry for a dialled data address
//     or a gossip address, never by what a peer claims unverified.
//   - The rules in force are one immutable snapshot (Rules), swapped
//     whole; a connection held by a rule wakes when the snapshot is
//     replaced or the connection is closed, and re-reads it.
package fault
