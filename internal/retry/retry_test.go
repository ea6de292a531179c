package retry

import (
	"runtime"
	"testing"
	"time"
)

// within reports whether d is the nominal interval n randomised by at most
// ±Jitter (the library rounds up by at most a nanosecond).
func within(d, n time.Duration) bool {
	lo := time.Duration(float64(n) * (1 - Jitter))
	hi := time.Duration(float64(n)*(1+Jitter)) + time.Nanosecond
	return d >= lo && d <= hi
}

func TestDelaysDoubleUpToMaxWithJitter(t *testing.T) {
	nominal := []time.Duration{10, 20, 40, 80, 100, 100, 100}
	for i := range nominal {
		nominal[i] *= time.Millisecond
	}
	b := New(10*time.Millisecond, 100*time.Millisecond)
	spread := map[time.Duration]bool{}
	for round := range 200 {
		for i, n := range nominal {
			d := b.Next()
			if !within(d, n) {
				t.Fatalf("round %d, delay %d: %v, want %v ±%v%%", round, i, d, n, Jitter*100)
			}
			if i == 0 {
				spread[d] = true
			}
		}
		b.Reset()
	}
	if len(spread) < 10 {
		t.Fatalf("first delays took %d distinct values in 200 rounds: not jittered", len(spread))
	}
}

func TestAcceptBackoffIsNetHTTPs(t *testing.T) {
	b := AcceptBackoff()
	for i, n := range []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000} {
		if d := b.Next(); !within(d, n*time.Millisecond) {
			t.Fatalf("delay %d: %v, want %vms ±%v%%", i, d, n, Jitter*100)
		}
	}
	b.Reset()
	if d := b.Next(); !within(d, 5*time.Millisecond) {
		t.Fatalf("after reset: %v, want 5ms", d)
	}
}

func TestWaitEndsWhenDoneCloses(t *testing.T) {
	base := runtime.NumGoroutine()
	done := make(chan struct{})
	b := New(time.Hour, time.Hour)
	returned := make(chan bool)
	go func() { returned <- b.Wait(done) }()
	close(done)
	select {
	case ok := <-returned:
		if ok {
			t.Fatal("Wait reported a full wait after done closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after done closed")
	}
	if b.Wait(done) || Sleep(done, 0) {
		t.Fatal("waiting on a closed done channel reported a full wait")
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSleepWaitsWhileDoneIsOpen(t *testing.T) {
	start := time.Now()
	if !Sleep(make(chan struct{}), 5*time.Millisecond) {
		t.Fatal("Sleep ended early with done open")
	}
	if el := time.Since(start); el < 5*time.Millisecond {
		t.Fatalf("Sleep returned after %v, want at least 5ms", el)
	}
}
