package gateway

import (
	"context"
	"net"
	"sync"
	"time"
)

// healthChecker probes every local endpoint with a TCP connect and
// publishes the healthy counts to the federation when they change.
type healthChecker struct {
	g        *Gateway
	interval time.Duration
	timeout  time.Duration
}

func newHealthChecker(g *Gateway) *healthChecker {
	return &healthChecker{g: g, interval: g.cfg.Health.Interval, timeout: g.cfg.Health.Timeout}
}

func (h *healthChecker) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.checkOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkOnce probes all endpoints concurrently and applies the result.
func (h *healthChecker) checkOnce(ctx context.Context) {
	local := h.g.local.Load()
	seen := map[string]bool{}
	for _, svc := range local.byKey {
		for _, p := range svc.Ports {
			addrs, _ := svc.Target(p.Port)
			for _, a := range addrs {
				seen[a] = true
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	down := map[string]bool{}
	d := net.Dialer{Timeout: h.timeout}
	for a := range seen {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				mu.Lock()
				down[a] = true
				mu.Unlock()
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	if t, changed := h.g.setDown(down); changed {
		h.g.metrics.endpointsDown.Set(float64(len(down)))
		h.g.log.Info("local endpoint health changed", "down", len(down), "checked", len(seen))
		h.g.catalog.SetServices(h.g.catalogServices(t))
	}
}
