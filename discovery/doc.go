// Package discovery tells a gateway which services run in its own cluster.
//
// Everything the gateway knows about local services comes through Source,
// so nothing in the gateway assumes where services come from. There are
// three sources, one chosen in the gateway's configuration
// (discovery.source):
//
//   - Static: the fixed list of the configuration's services key.
//   - File: the same list in a YAML or JSON file of its own, watched and
//     read again when it changes (VMs, or anything that writes a file).
//   - Kubernetes (discovery/kube): Services and EndpointSlices exported
//     with the Multi-Cluster Services API's ServiceExport.
//
// Invariants every source keeps:
//
//   - Services returns the last good list. A source that cannot read its
//     origin (a file that no longer parses, an API server that went away)
//     keeps serving what it had, says so in a log line and a metric, and
//     never publishes an empty or partial list in its place (static
//     stability): TestFileKeepsLastGoodList, and in discovery/kube
//     TestAPIServerRestartKeepsCatalog.
//   - A service whose residency labels cannot be read is not exported at
//     all, rather than exported without them: no fault relaxes residency.
//   - Changes is signalled after the list changed, never before; a reader
//     that wakes calls Services and sees the new list.
//
// ParseFile is the one parser of the file format; FuzzParseFile proves
// it never panics and that what it accepts passes Validate.
package discovery
