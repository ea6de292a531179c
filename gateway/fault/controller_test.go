package fault

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/internal/fakeclock"
	"github.com/straitmesh/strait/internal/metricstest"
)

func newTestController(t *testing.T, enabled bool) (*Controller, *fakeclock.Clock, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	clk := fakeclock.New(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	c := New(Config{Enabled: enabled, MaxLease: time.Minute}, Options{Cluster: "self", Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registry: reg, Now: clk.Now})
	return c, clk, reg, &logs
}

func TestFaultDisabledRefuses(t *testing.T) {
	c, _, _, _ := newTestController(t, false)
	if _, err := c.Inject(Spec{ID: "a", Kind: Kill, Lease: Duration(time.Second)}); !errors.Is(err, ErrOff) {
		t.Fatalf("inject with fault mode off: %v, want ErrOff", err)
	}
	if _, err := c.Undo("a"); !errors.Is(err, ErrOff) {
		t.Fatalf("undo with fault mode off: %v", err)
	}
	if !strings.Contains(ErrOff.Error(), "set faults.enabled: true") {
		t.Fatalf("message %q", ErrOff)
	}
	// The wrappers change nothing.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c.Wrap(a, "x") != a {
		t.Fatal("Wrap wrapped a connection with fault mode off")
	}
}

func TestFaultValidation(t *testing.T) {
	c, _, _, _ := newTestController(t, true)
	s := Duration(time.Second)
	for _, tc := range []struct {
		name  string
		spec  Spec
		field string
	}{
		{"missing id", Spec{Kind: Kill, Lease: s}, "id"},
		{"unknown kind", Spec{ID: "a", Kind: "meteor", Lease: s}, "kind"},
		{"partition without peers", Spec{ID: "a", Kind: Partition, Lease: s}, "peers"},
		{"latency without peers", Spec{ID: "a", Kind: Latency, Delay: s, Lease: s}, "peers"},
		{"latency without delay", Spec{ID: "a", Kind: Latency, Peers: []string{"b"}, Lease: s}, "delay"},
		{"jitter above delay", Spec{ID: "a", Kind: Latency, Peers: []string{"b"}, Delay: s, Jitter: 2 * s, Lease: s}, "jitter"},
		{"loss of nothing", Spec{ID: "a", Kind: Loss, Peers: []string{"b"}, Lease: s}, "percent"},
		{"loss above 100", Spec{ID: "a", Kind: Loss, Peers: []string{"b"}, Percent: 101, Lease: s}, "percent"},
		{"no lease", Spec{ID: "a", Kind: Kill}, "lease"},
		{"negative lease", Spec{ID: "a", Kind: Kill, Lease: -s}, "lease"},
		{"lease above maxLease", Spec{ID: "a", Kind: Kill, Lease: Duration(2 * time.Minute)}, "lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Inject(tc.spec)
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Field != tc.field {
				t.Fatalf("got %v, want an invalid %s", err, tc.field)
			}
		})
	}
	if len(c.List()) != 0 || c.Rules() != nil {
		t.Fatal("an invalid fault came into force")
	}
}

func TestFaultInjectRenewUndo(t *testing.T) {
	c, clk, reg, logs := newTestController(t, true)
	spec := Spec{ID: "drill/kill", Kind: Blackhole, Peers: []string{"b", "a"}, Lease: Duration(10 * time.Second)}
	f, err := c.Inject(spec)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(10 * time.Second); !f.Expires.Equal(want) {
		t.Fatalf("expires %s, want %s", f.Expires, want)
	}
	if got := metricstest.Sum(t, reg, "strait_gateway_faults_active", map[string]string{"kind": "blackhole"}); got != 1 {
		t.Fatalf("faults_active %v", got)
	}
	// Peers apply by cluster; this cluster and unknown peers are spared.
	r := c.Rules()
	if !r.For("a").Hold || !r.For("b").Hold || r.For("c").Hold || r.For("self").Hold || r.For("").Hold {
		t.Fatalf("effects: a %+v b %+v c %+v", r.For("a"), r.For("b"), r.For("c"))
	}
	clk.Add(8 * time.Second)
	// The same fault renews its lease (peers in another order are the same).
	spec.Peers = []string{"a", "b"}
	f2, err := c.Inject(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !f2.Expires.Equal(clk.Now().Add(10 * time.Second)) {
		t.Fatalf("renewed lease expires %s", f2.Expires)
	}
	if c.Rules() != r {
		t.Fatal("a renewal replaced the rules")
	}
	// Another fault under the same id conflicts.
	other := spec
	other.Peers = []string{"a"}
	if _, err := c.Inject(other); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting renewal: %v", err)
	}
	clk.Add(8 * time.Second) // 16s after injection: the renewal holds it
	c.Expire()
	if len(c.List()) != 1 {
		t.Fatal("a renewed fault expired on its first lease")
	}
	if _, err := c.Undo("drill/kill"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Changed():
	default:
		t.Fatal("undo did not wake what the old rules held")
	}
	if c.Rules() != nil || len(c.List()) != 0 {
		t.Fatal("fault still in force after undo")
	}
	if _, err := c.Undo("drill/kill"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second undo: %v", err)
	}
	for outcome, want := range map[string]float64{"injected": 1, "undone": 1, "expired": 0} {
		if got := metricstest.Sum(t, reg, "strait_gateway_faults_total", map[string]string{"kind": "blackhole", "outcome": outcome}); got != want {
			t.Errorf("faults_total{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
	for _, line := range []string{"fault injected", "fault lease renewed", "fault undone"} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("no %q in the log:\n%s", line, logs)
		}
	}
}

func TestFaultLeaseExpires(t *testing.T) {
	c, clk, reg, logs := newTestController(t, true)
	if _, err := c.Inject(Spec{ID: "k", Kind: Kill, Lease: Duration(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inject(Spec{ID: "l", Kind: Latency, Peers: []string{"b"}, Delay: Duration(time.Millisecond), Lease: Duration(30 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	clk.Add(4 * time.Second)
	if next := c.Expire(); !next.Equal(clk.Now().Add(time.Second)) {
		t.Fatalf("next expiry %s", next)
	}
	clk.Add(time.Second)
	c.Expire()
	if c.Rules().Has(Kill) || !c.Rules().Has(Latency) {
		t.Fatalf("after the kill's lease: %+v", c.List())
	}
	if got := metricstest.Sum(t, reg, "strait_gateway_faults_total", map[string]string{"kind": "kill", "outcome": "expired"}); got != 1 {
		t.Fatalf("expired %v", got)
	}
	if !strings.Contains(logs.String(), "fault lease ran out without renewal") {
		t.Fatalf("log:\n%s", logs)
	}
	clk.Add(time.Minute)
	if next := c.Expire(); !next.IsZero() || c.Rules() != nil {
		t.Fatalf("after every lease: next %s, rules %v", next, c.Rules())
	}
}

func TestFaultConnHeldAndKilled(t *testing.T) {
	c, _, _, _ := newTestController(t, true)
	a, b := net.Pipe()
	defer b.Close()
	conn := c.Wrap(a, "")
	if _, err := c.Inject(Spec{ID: "f", Kind: Freeze, Lease: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := conn.Write([]byte("x"))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		t.Fatalf("write under freeze returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := c.Undo("f"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("held write after undo: %v", err)
	}
	// A kill cuts open connections.
	if _, err := c.Inject(Spec{ID: "k", Kind: Kill, Lease: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(buf); err == nil {
		t.Fatal("connection open under kill")
	}
	d := c.Dial(func(ctx context.Context, addr string) (net.Conn, error) {
		t.Fatal("dialled under kill")
		return nil, nil
	},
		func(string) string { return "b" })
	if _, err := d(context.Background(), "x:1"); !errors.Is(err, ErrKilled) {
		t.Fatalf("dial under kill: %v", err)
	}
}

func TestFaultDialHeldByBlackhole(t *testing.T) {
	c, _, _, _ := newTestController(t, true)
	if _, err := c.Inject(Spec{ID: "p", Kind: Partition, Peers: []string{"b"}, Lease: Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	dialled := 0
	d := c.Dial(func(ctx context.Context, addr string) (net.Conn, error) {
		dialled++
		a, b := net.Pipe()
		b.Close()
		return a, nil
	}, func(addr string) string { return strings.TrimSuffix(addr, ":1") })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := d(ctx, "b:1"); !errors.Is(err, context.DeadlineExceeded) || dialled != 0 {
		t.Fatalf("dial to a partitioned peer: %v (dialled %d)", err, dialled)
	}
	conn, err := d(context.Background(), "c:1")
	if err != nil || dialled != 1 {
		t.Fatalf("dial to another peer: %v", err)
	}
	conn.Close()
}

// TestFaultIgnoresFieldsItsKindDoesNotTake: a drill may send every field
// with every kind; a kill with peers, a delay and a percent is a kill.
func TestFaultIgnoresFieldsItsKindDoesNotTake(t *testing.T) {
	c, _, _, _ := newTestController(t, true)
	f, err := c.Inject(Spec{ID: "k", Kind: Kill, Peers: []string{"b"}, Delay: Duration(50 * time.Millisecond),
		Jitter: Duration(5 * time.Millisecond), Percent: 1.5, Lease: Duration(15 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Peers) != 0 || f.Delay != 0 || f.Jitter != 0 || f.Percent != 0 {
		t.Fatalf("fault in force: %+v", f)
	}
	if !c.Rules().For("").Cut {
		t.Fatal("the kill does not apply to everyone")
	}
	// Renewed with other unused fields, it is the same fault.
	if _, err := c.Inject(Spec{ID: "k", Kind: Kill, Lease: Duration(15 * time.Second)}); err != nil {
		t.Fatalf("renewal: %v", err)
	}
}
