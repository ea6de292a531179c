package gateway

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/federation/state"
)

// watchRoutes keeps the gateway's failover priorities and its export and
// import rules equal to those of the routing state until ctx ends. When
// the rules change, the gateway announces its services again: what it
// may no longer export leaves its catalog entry.
func (g *Gateway) watchRoutes(ctx context.Context, wg *sync.WaitGroup, store *state.Store) {
	ch, stop := store.Watch()
	var lastExports, lastImports []state.Record
	apply := func() {
		v := store.View()
		for _, svc := range g.sel.Failover.Refresh(v.List(state.KindFailover), g.log) {
			ns, name, _ := strings.Cut(svc, "/")
			g.log.Info("failover priority changed", "service", svc, "priority", g.sel.Failover.Priority(ns, name), "index", v.Index)
		}
		exports, imports := v.List(state.KindExport), v.List(state.KindImport)
		if slices.Equal(exports, lastExports) && slices.Equal(imports, lastImports) {
			return
		}
		lastExports, lastImports = exports, imports
		g.access.Refresh(exports, imports, g.log)
		g.log.Info("export and import rules in force", "exports", len(exports), "imports", len(imports), "index", v.Index)
		if t := g.local.Load(); g.catalog != nil && t != nil {
			g.catalog.SetServices(g.catalogServices(t))
		}
	}
	apply()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				apply()
			}
		}
	}()
}

// catalogServices is what the gateway announces of t: every local
// service, less what the routing state's export records do not let this
// cluster export (a service none of whose ports it may export is left
// out; of the others, the ports it may not).
func (g *Gateway) catalogServices(t *localTable) []catalog.Service {
	all := t.exported()
	out := all[:0]
	for _, s := range all {
		if !g.access.Restricted(s.Namespace, s.Name) {
			out = append(out, s)
			continue
		}
		ports := s.Ports[:0:0]
		for _, p := range s.Ports {
			if g.access.MayExport(s.Namespace, s.Name, g.cfg.Cluster, p.Port) {
				ports = append(ports, p)
			}
		}
		if len(ports) == 0 {
			continue
		}
		s.Ports = ports
		out = append(out, s)
	}
	return out
}
