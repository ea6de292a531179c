// Package admin is a gateway's admin HTTP API (health, readiness,
// metrics, status, gossip keys, the residency policy in force) and its
// typed client, which the CLI uses to talk to gateways. The server sees a
// gateway only through the Gateway interface; the documents it serves
// (Status, ResidencyStatus, KeyList) are defined here, so a client never
// needs the gateway process package.
//
// Invariants:
//   - Every route is a probe (/healthz, /readyz, /metrics: no checks) or an
//     operator route; an operator route is served only after the checks
//     of Access (Host, cross-origin, credentials when configured,
//     Content-Type of a POST), so DNS rebinding and a browser's CSRF never
//     reach one (gateway's TestAdminOperatorEndpointsNeedTheToken,
//     TestAdminOnLoopbackWithoutToken).
//   - No answer carries a gossip key: keys are named by their fingerprint
//     (catalog.KeyFingerprint), the key operations included.
//   - ProbeHandler serves the probes and nothing else (TestProbesListener).
//   - The topology page (/ui/, ui.go) is an operator route like the
//     others and fetches nothing from the network: its assets are
//     embedded and its Content-Security-Policy allows only its own origin
//     (TestUIIsAnOperatorRoute). A page that falls behind the event stream
//     loses refusal events; it never slows the data plane.
package admin
