package gateway

import (
	"sync"
	"time"
)

// retryBudget bounds per-request retries per service: within a window,
// retries may be at most ratio of the requests, and at least min, so that
// a service that fails under load gets no retry storm while a quiet one
// can still retry. Counts start again every window.
type retryBudget struct {
	ratio  float64
	min    int
	window time.Duration
	now    func() time.Time

	mu  sync.Mutex
	per map[string]*budgetCount
}

type budgetCount struct {
	since             time.Time
	requests, retries int
}

// Default retry budget: 20% of a service's requests, at least 3, per 10 s.
const (
	retryBudgetRatio  = 0.2
	retryBudgetMin    = 3
	retryBudgetWindow = 10 * time.Second
)

func newRetryBudget(now func() time.Time) *retryBudget {
	return &retryBudget{ratio: retryBudgetRatio, min: retryBudgetMin, window: retryBudgetWindow, now: now, per: map[string]*budgetCount{}}
}

func (b *retryBudget) count(svc string) *budgetCount {
	now := b.now()
	c := b.per[svc]
	if c == nil || now.Sub(c.since) >= b.window {
		if c == nil && len(b.per) >= 4096 {
			clear(b.per) // services that went away; the counts are only a window's
		}
		c = &budgetCount{since: now}
		b.per[svc] = c
	}
	return c
}

// request counts a request to svc.
func (b *retryBudget) request(svc string) {
	b.mu.Lock()
	b.count(svc).requests++
	b.mu.Unlock()
}

// retry reports whether a request to svc may be retried now, and counts
// the retry when it may.
func (b *retryBudget) retry(svc string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.count(svc)
	if c.retries >= max(b.min, int(b.ratio*float64(c.requests))) {
		return false
	}
	c.retries++
	return true
}
