// Package lab runs a whole federation inside one process on loopback: a
// gateway per cluster, demo services, an ephemeral CA, and an emulated
// network link between every ordered pair of clusters.
//
// Links are Shopify/toxiproxy proxies used as a library. Every data-plane
// connection from cluster A to cluster B's gateway goes through link A->B,
// whose latency, connection loss and partition the caller controls. Gossip
// goes directly (toxiproxy carries TCP only; memberlist probes over UDP).
//
// The end-to-end tests and `strait dev` both build on Start.
package lab
