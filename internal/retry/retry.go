package retry

import (
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Jitter is the fraction by which each delay is randomised either way
// (gRPC's connection backoff uses the same).
const Jitter = 0.2

// Backoff yields the delays between attempts: doubling from an initial
// interval up to a maximum, each randomised by ±Jitter.
type Backoff struct {
	b backoff.ExponentialBackOff
}

// New returns a Backoff whose delays start at initial and double up to max.
func New(initial, max time.Duration) *Backoff {
	b := &Backoff{b: backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: Jitter,
		Multiplier:          2,
		MaxInterval:         max,
	}}
	b.b.Reset()
	return b
}

// AcceptBackoff returns the pacing for a listener whose Accept fails with
// an error that may pass (out of file descriptors, a connection reset
// before it was accepted): 5ms doubling to 1s, as net/http's server
// waits. Reset it after each accepted connection.
func AcceptBackoff() *Backoff { return New(5*time.Millisecond, time.Second) }

// Next returns the next delay.
func (b *Backoff) Next() time.Duration { return b.b.NextBackOff() }

// Reset starts the delays again from the initial interval, after a success.
func (b *Backoff) Reset() { b.b.Reset() }

// Wait sleeps for the next delay. It returns false, without waiting the
// delay out, if done is closed first.
func (b *Backoff) Wait(done <-chan struct{}) bool { return Sleep(done, b.Next()) }

// Sleep waits for d. It returns false, without waiting d out, if done is
// closed first.
func Sleep(done <-chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return false
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}
