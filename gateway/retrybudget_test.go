package gateway

import (
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/fakeclock"
)

// TestRetryBudget: retries are at most 20% of a service's requests in a
// window (at least 3), counted per service, and start again with the
// next window.
func TestRetryBudget(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := newRetryBudget(clk.Now)
	retries := func(svc string) int {
		n := 0
		for b.retry(svc) {
			n++
		}
		return n
	}
	if n := retries("a"); n != 3 {
		t.Fatalf("quiet service: %d retries, want the floor of 3", n)
	}
	for range 100 {
		b.request("b")
	}
	if n := retries("b"); n != 20 {
		t.Fatalf("100 requests: %d retries, want 20", n)
	}
	if b.retry("a") {
		t.Fatal("a retried past its budget")
	}
	clk.Add(10 * time.Second)
	if n := retries("b"); n != 3 {
		t.Fatalf("next window: %d retries, want 3", n)
	}
}
