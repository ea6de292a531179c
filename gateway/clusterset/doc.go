// Package clusterset answers DNS for the names of imported services,
// <service>.<namespace>.svc.<domain> (clusterset.local by default), with
// the local addresses where the gateway serves them, so that a workload
// dials ledger.demo.svc.clusterset.local:8080 with neither proxy settings
// nor a port per import.
//
// Invariants:
//
//   - The server is authoritative for its domain and nothing else: it
//     never recurses or forwards, and a name outside the domain is
//     answered REFUSED (TestAnswer).
//   - Every message that can be answered is answered, malformed ones with
//     FORMERR, and nothing a client sends makes it panic (FuzzAnswer,
//     FuzzClustersetName).
//   - Names are matched without regard to case; the answer echoes the
//     question as it was asked (TestResolverOverLoopback).
//   - Assign gives each service an address that depends only on the block
//     and the set of services, never on their order in the config
//     (TestAssignIgnoresOrder). A service keeps its address when others
//     are added unless one of them hashes to the same address and sorts
//     before it (TestAssignStable).
//   - Every answer, FORMERR ones included, is counted by query type and
//     response code (TestQueriesCounted).
package clusterset
