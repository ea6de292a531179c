package gateway_test

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway"
)

// freeAddr returns a loopback address that nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestStartRollsBackWhenAComponentFails: a gateway whose start fails at
// its first listener, its second, its gossip (after the admin server and
// the listeners run), its routing state (after it joined the gossip
// pool) or its DNS server (after everything else started) returns an
// error naming the address in use and leaves nothing behind: every
// address it bound can be bound again and no goroutine of it is left.
func TestStartRollsBackWhenAComponentFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		taken func(cfg *gateway.Config) *string
		state bool
	}{
		{"data listener", func(c *gateway.Config) *string { return &c.Listen.Data }, false},
		{"admin listener", func(c *gateway.Config) *string { return &c.Listen.Admin }, false},
		{"gossip", func(c *gateway.Config) *string { return &c.Gossip.Bind }, false},
		{"routing state", func(c *gateway.Config) *string { return &c.State.Bind }, true},
		// Last before readiness: everything else runs when it fails.
		{"dns", func(c *gateway.Config) *string { return &c.DNS.Listen }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			cfg := gateway.DefaultConfig()
			cfg.Listen = gateway.ListenConfig{Data: freeAddr(t), Admin: freeAddr(t), Connect: freeAddr(t), Passthrough: freeAddr(t)}
			cfg.Gossip.Bind = freeAddr(t)
			cfg.DNS.Listen = freeAddr(t)
			if tc.state {
				cfg.State.DataDir, cfg.State.Bind, cfg.State.Voter, cfg.State.BootstrapExpect = t.TempDir(), freeAddr(t), true, 1
				cfg.Listen.Control = freeAddr(t)
			}
			addr := tc.taken(&cfg)
			hold, err := net.Listen("tcp", *addr)
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Close()
			bound := []string{cfg.Listen.Data, cfg.Listen.Admin, cfg.Listen.Connect, cfg.Listen.Passthrough, cfg.Gossip.Bind, cfg.Listen.Control, cfg.DNS.Listen}

			g, err := startGatewayWith(t, cfg, nil)
			if err == nil {
				t.Fatalf("gateway %v started with %s taken", g.DataAddr(), *addr)
			}
			t.Logf("start failed: %v", err)
			if !strings.Contains(err.Error(), *addr) || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("error does not name the address in use (%s): %v", *addr, err)
			}
			for _, a := range bound {
				if a == "" || a == *addr {
					continue
				}
				ln, err := net.Listen("tcp", a)
				if err != nil {
					t.Errorf("%s still bound after the failed start: %v", a, err)
					continue
				}
				ln.Close()
			}
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines before the start, %d after its rollback:\n%s", before, n, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}
