package catalog

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// settles waits until no more than want goroutines run, and fails with
// their stacks if that takes longer than a few seconds.
func settles(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownStopsJoinRetries: a catalog whose join peer never answers
// keeps retrying with backoff; Shutdown ends that loop and every other.
func TestShutdownStopsJoinRetries(t *testing.T) {
	base := runtime.NumGoroutine()
	c := start(t, testNode{name: "alone", join: []string{"127.0.0.1:1"}})
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	settles(t, base)
}

// countHandler counts the records logged with one message.
type countHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// TestTransportShutdownDuringAcceptBackoff: when every Accept fails (here
// the listener was closed underneath), the accept loop backs off; once its
// delay has grown past half a second, Shutdown still ends it at once.
func TestTransportShutdownDuringAcceptBackoff(t *testing.T) {
	base := runtime.NumGoroutine()
	var failures atomic.Int64
	tr, err := newTransport("127.0.0.1", 0, slog.New(countHandler{msg: "gossip tcp accept", n: &failures}))
	if err != nil {
		t.Fatal(err)
	}
	tr.tcp.Close()
	// After 8 failures the next delay is 640ms ±20%.
	for deadline := time.Now().Add(10 * time.Second); failures.Load() < 8; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d accept failures in 10s", failures.Load())
		}
	}
	start := time.Now()
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Fatalf("shutdown took %v: the accept loop slept through it", el)
	}
	settles(t, base)
}

// TestMemberlistClosedSocketsAtShutdown: memberlist's errors are errors,
// except that once the catalog shuts down a line about its own sockets
// being closed is logged at debug.
func TestMemberlistClosedSocketsAtShutdown(t *testing.T) {
	var buf bytes.Buffer
	var closing atomic.Bool
	w := &slogWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), closing: &closing}
	closed := "[ERR] memberlist: Failed to send indirect UDP ping: write udp 127.0.0.1:7946->127.0.0.2:7946: use of closed network connection\n"
	other := "[ERR] memberlist: Failed to send indirect UDP ping: write udp 127.0.0.1:7946->127.0.0.2:7946: connection refused\n"
	w.Write([]byte(closed + other))
	closing.Store(true)
	w.Write([]byte(closed + other + "[WARN] memberlist: Failed fallback TCP ping: use of closed network connection\n"))
	var levels []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		_, rest, _ := strings.Cut(line, "level=")
		level, _, _ := strings.Cut(rest, " ")
		levels = append(levels, level)
	}
	if want := []string{"ERROR", "ERROR", "DEBUG", "ERROR", "DEBUG"}; !slices.Equal(levels, want) {
		t.Fatalf("levels %v, want %v:\n%s", levels, want, buf.String())
	}
}
