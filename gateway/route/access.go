package route

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/straitmesh/strait/federation/state"
)

// AccessTable holds the routing state's export and import records: which
// clusters may export a service (and on which ports), and which clusters
// may import it. A service without a record of a kind is open to every
// cluster for that kind, and so is a record whose cluster list is empty.
// Readers never lock; Refresh swaps the whole table.
//
// The records bind what gossip cannot: a gateway's signed catalog entry
// proves which cluster it speaks for, not that the cluster may serve a
// service. An export record keeps every other cluster that announces the
// service out of its plans, and an import record makes the exporting
// gateways refuse streams from any other cluster, by the peer's verified
// certificate.
type AccessTable struct {
	m atomic.Pointer[map[string]access]
}

// access is one service's rules. A nil list is open to every cluster; a
// record that did not parse is closed to every cluster.
type access struct {
	exporters, importers []string
	ports                []int
	hasExport, hasImport bool
	badExport, badImport bool
}

// MayExport reports whether cluster may serve port of service ns/name to
// other clusters.
func (a *AccessTable) MayExport(ns, name, cluster string, port int) bool {
	r, ok := a.lookup(ns, name)
	if !ok || !r.hasExport {
		return true
	}
	if r.badExport {
		return false
	}
	if len(r.exporters) > 0 && !slices.Contains(r.exporters, cluster) {
		return false
	}
	return len(r.ports) == 0 || port == 0 || slices.Contains(r.ports, port)
}

// MayImport reports whether cluster may reach service ns/name in other
// clusters.
func (a *AccessTable) MayImport(ns, name, cluster string) bool {
	r, ok := a.lookup(ns, name)
	if !ok || !r.hasImport {
		return true
	}
	return !r.badImport && (len(r.importers) == 0 || slices.Contains(r.importers, cluster))
}

// Restricted reports whether ns/name has an export or import record.
func (a *AccessTable) Restricted(ns, name string) bool {
	r, ok := a.lookup(ns, name)
	return ok && (r.hasExport || r.hasImport)
}

func (a *AccessTable) lookup(ns, name string) (access, bool) {
	if a == nil {
		return access{}, false
	}
	m := a.m.Load()
	if m == nil {
		return access{}, false
	}
	r, ok := (*m)[ns+"/"+name]
	return r, ok
}

// Refresh installs the export and import records of the routing state. A
// record that does not parse closes its service to every cluster for its
// kind (the control API validates payloads; this only happens across
// versions with other rules), and is logged.
func (a *AccessTable) Refresh(exports, imports []state.Record, log *slog.Logger) {
	m := make(map[string]access, len(exports)+len(imports))
	for _, r := range exports {
		acc := m[r.Key]
		acc.hasExport = true
		var e state.Export
		if err := json.Unmarshal([]byte(r.Value), &e); err != nil {
			log.Warn("export record does not parse: no cluster may export the service", "service", r.Key, "index", r.Index, "err", err)
			acc.badExport = true
		} else {
			acc.exporters, acc.ports = e.Clusters, e.Ports
		}
		m[r.Key] = acc
	}
	for _, r := range imports {
		acc := m[r.Key]
		acc.hasImport = true
		var im state.Import
		if err := json.Unmarshal([]byte(r.Value), &im); err != nil {
			log.Warn("import record does not parse: no cluster may import the service", "service", r.Key, "index", r.Index, "err", err)
			acc.badImport = true
		} else {
			acc.importers = im.Clusters
		}
		m[r.Key] = acc
	}
	a.m.Store(&m)
}
