// Package catalog is how gateways find each other and learn what every
// cluster exports: memberlist membership and the gossiped service catalog
// (its binary codec, memberlist delegate, UDP/TCP transport and gossip
// keys).
//
// Each gateway owns exactly one catalog entry (its cluster's exported
// services with ports, labels and endpoint counts) and is the only writer
// of it. Invariants:
//
//   - An entry carries a version that its owner raises on every change and
//     that never goes backwards across restarts (it starts at the wall
//     clock in nanoseconds); a receiver keeps the entry with the higher
//     version, so an older copy arriving late never overwrites a newer one.
//   - State is O(clusters x services): no remote endpoint address is ever
//     gossiped, only counts and the owning gateway's data-plane address.
//   - Decoding a gossip message never panics: malformed or oversized input
//     is an error (FuzzDecodeMessage).
//   - An entry is signed by its owner's current certificate (sign.go): a
//     renewed certificate re-signs it under a new version before the old
//     one expires, and peers keep the entry they hold until the new one
//     verifies, so its services never disappear
//     (TestCatalogRenewalKeepsServices); an entry whose certificate the
//     current trust refuses (revoked, untrusted root) is hidden
//     (TestCatalogTrustChange).
//   - When memberlist declares a gateway dead or gone, its entry stays
//     (static stability: routing keeps the last known data) but is marked
//     unreachable, and consumers are told through Watch.
//
// Changes go out at once as a broadcast and as direct reliable sends to
// every member; memberlist's push/pull full-state exchange is the
// anti-entropy that repairs anything lost.
package catalog
