// Package admin is a gateway's admin HTTP API (health, readiness,
// metrics, status, gossip keys, the residency policy in force) and its
// typed client, which the CLI uses to talk to gateways. The server sees a
// gateway only through the Gateway interface; the documents it serves
// (Status, ResidencyStatus) are defined here, so a client never needs the
// gateway process package.
package admin
