package gateway

import (
	"context"
	"strings"
	"sync"

	"github.com/straitmesh/strait/federation/state"
)

// watchFailover keeps the gateway's failover priorities equal to those of
// the routing state until ctx ends.
func (g *Gateway) watchFailover(ctx context.Context, wg *sync.WaitGroup, store *state.Store) {
	ch, stop := store.Watch()
	apply := func() {
		v := store.View()
		for _, svc := range g.sel.Failover.Refresh(v.List(state.KindFailover), g.log) {
			ns, name, _ := strings.Cut(svc, "/")
			g.log.Info("failover priority changed", "service", svc, "priority", g.sel.Failover.Priority(ns, name), "index", v.Index)
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
