// Package retry paces loops that try again after a failure: jittered
// exponential backoff (github.com/cenkalti/backoff) and waits that end
// early when their owner stops.
//
// Guarantees:
//
//   - The n-th delay of New(initial, max) (counting from 0, or from the
//     last Reset) is min(initial·2ⁿ, max) randomised by ±Jitter: the same
//     intervals as a plain doubling backoff, spread so that gateways that
//     fail together do not retry together.
//   - Wait and Sleep return false as soon as their done channel is closed,
//     however long the delay, and leave no timer or goroutine behind: a
//     loop that waits through them stops when its owner does
//     (TestWaitEndsWhenDoneCloses).
//   - A Backoff belongs to one loop: it is not safe for concurrent use.
package retry
