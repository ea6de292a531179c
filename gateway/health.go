package gateway

import (
	"context"
	"net"
	"sync"
	"time"
)

// healthChecker probes every local endpoint with a TCP connect and
// publishes the healthy counts to the federation when they change. An
// endpoint that has passed a check is marked down after unhealthy
// failures in a row, and a down one up again after healthy passes in a
// row; one that never passed is down at its first failure. Its state is
// owned by the goroutine that runs the checks.
type healthChecker struct {
	g                  *Gateway
	interval           time.Duration
	timeout            time.Duration
	unhealthy, healthy int
	endpoints          map[string]*endpointHealth // by dial address
}

// endpointHealth is one endpoint's recent checks.
type endpointHealth struct {
	passed     bool // some check has passed
	down       bool
	fails, oks int // checks failed, passed in a row
}

func newHealthChecker(g *Gateway) *healthChecker {
	return &healthChecker{g: g, interval: g.cfg.Health.Interval, timeout: g.cfg.Health.Timeout,
		unhealthy: g.cfg.Health.UnhealthyThreshold, healthy: g.cfg.Health.HealthyThreshold,
		endpoints: map[string]*endpointHealth{}}
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
	failed := h.probe(ctx, seen)
	if ctx.Err() != nil {
		return
	}
	h.g.metrics.healthFailures.Add(float64(len(failed)))
	down := h.record(seen, failed)
	if t, changed := h.g.setDown(down); changed {
		h.g.metrics.endpointsDown.Set(float64(len(down)))
		h.g.log.Info("local endpoint health changed", "down", len(down), "checked", len(seen))
		h.g.catalog.SetServices(h.g.catalogServices(t))
	}
}

// probe connects to every address concurrently and returns those that
// failed, with why.
func (h *healthChecker) probe(ctx context.Context, addrs map[string]bool) map[string]error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := map[string]error{}
	d := net.Dialer{Timeout: h.timeout}
	for a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				mu.Lock()
				failed[a] = err
				mu.Unlock()
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	return failed
}

// record applies one round of checks of the endpoints seen (failed: those
// that failed, with why) and returns the endpoints now down. Endpoints no
// longer seen are forgotten.
func (h *healthChecker) record(seen map[string]bool, failed map[string]error) map[string]bool {
	for a := range h.endpoints {
		if !seen[a] {
			delete(h.endpoints, a)
		}
	}
	down := map[string]bool{}
	for a := range seen {
		e := h.endpoints[a]
		if e == nil {
			e = &endpointHealth{}
			h.endpoints[a] = e
		}
		if err, ok := failed[a]; ok {
			e.fails, e.oks = e.fails+1, 0
			if !e.down && (!e.passed || e.fails >= h.unhealthy) {
				e.down = true
				h.g.log.Warn("local endpoint down", "endpoint", a, "failedInARow", e.fails, "err", err)
			}
		} else {
			e.fails, e.oks, e.passed = 0, e.oks+1, true
			if e.down && e.oks >= h.healthy {
				e.down = false
				h.g.log.Info("local endpoint up", "endpoint", a, "passedInARow", e.oks)
			}
		}
		if e.down {
			down[a] = true
		}
	}
	return down
}
