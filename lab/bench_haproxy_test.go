//go:build bench

package lab_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/identity"
)

// HAProxy is the baseline of the data-plane benchmarks: two instances set
// up as a pair of gateways is. A takes plain TCP on loopback and carries
// each connection over TLS 1.3, with a client certificate, to B; B
// requires a client certificate from the lab's CA and forwards to the
// server. HAProxy keeps its defaults otherwise (among them, TLS session
// resumption between A and B).

// haproxyBinary finds haproxy, installing it with apt-get when missing.
func haproxyBinary(t *testing.T) string {
	t.Helper()
	return aptBinary(t, "haproxy", "haproxy", "haproxy is needed as the baseline", "/usr/sbin/haproxy")
}

// aptBinary finds the program name on PATH (or at one of also), and when
// it is missing installs the Debian package pkg with apt-get (apt-get
// update first) and looks again. A benchmark cannot run without it: it
// fails, never skips, saying why (why: "haproxy is needed as the
// baseline").
func aptBinary(t *testing.T, name, pkg, why string, also ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Logf("%s not found: installing %s with apt-get", name, pkg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"update"}, {"install", "-y", pkg}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s and %s is not installed; apt-get %s failed: %v\n%s\ninstall %s and run again",
				why, name, strings.Join(args, " "), err, tail(out, 2000), pkg)
		}
	}
	for _, p := range append([]string{name}, also...) {
		if p, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s and %s is still not found after apt-get install %s; install it and put it on PATH", why, name, pkg)
	return ""
}

// haproxyPair starts HAProxy A and B in front of servers and returns A's
// address for each server, in order. Both are killed when the test ends.
// With ca nil, A and B speak plain TCP to each other: no TLS, nothing but
// two processes on the path, the least a path through two proxies costs.
func haproxyPair(t *testing.T, ca *identity.CA, servers ...string) []string {
	t.Helper()
	addrs, _ := haproxyPairProcs(t, ca, servers...)
	return addrs
}

// haproxyPairProcs is haproxyPair that also returns the process IDs of
// A and B.
func haproxyPairProcs(t *testing.T, ca *identity.CA, servers ...string) (addrs []string, pids []int) {
	t.Helper()
	bin := haproxyBinary(t)
	dir := t.TempDir()
	var tlsA, tlsB string // the server line's and the bind line's TLS options
	if ca != nil {
		caFile := filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
			t.Fatalf("write CA for haproxy: %v", err)
		}
		pemA, pemB := haproxyCert(t, ca, dir, "haproxy-a"), haproxyCert(t, ca, dir, "haproxy-b")
		tlsA = fmt.Sprintf(" ssl verify required ca-file %s crt %s ssl-min-ver TLSv1.3", caFile, pemA)
		tlsB = fmt.Sprintf(" ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.3", pemB, caFile)
	}

	const global = `global
	nbthread 2

defaults
	mode tcp
	timeout connect 3s
	timeout client 60s
	timeout server 60s
`
	var cfgA, cfgB strings.Builder
	cfgA.WriteString(global)
	cfgB.WriteString(global)
	var front, back []string
	for i, server := range servers {
		a, b := freePort(t), freePort(t)
		front, back = append(front, a), append(back, b)
		fmt.Fprintf(&cfgA, `
frontend in%[1]d
	bind %[2]s
	default_backend out%[1]d

backend out%[1]d
	server b %[3]s%[4]s
`, i, a, b, tlsA)
		fmt.Fprintf(&cfgB, `
frontend in%[1]d
	bind %[2]s%[3]s
	default_backend out%[1]d

backend out%[1]d
	server s %[4]s
`, i, b, tlsB, server)
	}
	pidB := startHAProxy(t, bin, dir, "b", cfgB.String(), back)
	pidA := startHAProxy(t, bin, dir, "a", cfgA.String(), front)
	return front, []int{pidA, pidB}
}

// haproxyCert issues a certificate from ca and writes it with its key to
// one PEM file, as HAProxy wants them.
func haproxyCert(t *testing.T, ca *identity.CA, dir, name string) string {
	t.Helper()
	cert, key, err := ca.IssuePEM("bench", name, 24*time.Hour)
	if err != nil {
		t.Fatalf("issue certificate for %s: %v", name, err)
	}
	file := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(file, append(cert, key...), 0o600); err != nil {
		t.Fatalf("write certificate for %s: %v", name, err)
	}
	return file
}

// startHAProxy checks cfg with haproxy -c, runs haproxy on it in the
// foreground, waits until every address in addrs accepts and returns its
// process ID.
func startHAProxy(t *testing.T, bin, dir, name, cfg string, addrs []string) int {
	t.Helper()
	file := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatalf("write haproxy %s config: %v", name, err)
	}
	if out, err := exec.Command(bin, "-c", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("haproxy %s: %s refuses its config: %v\n%s\n--- %s\n%s", name, bin, err, out, file, cfg)
	}
	logFile := filepath.Join(dir, name+".log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatalf("haproxy %s log: %v", name, err)
	}
	cmd := exec.Command(bin, "-db", "-f", file)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start haproxy %s: %v", name, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		log.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				out, _ := os.ReadFile(logFile)
				t.Fatalf("haproxy %s exited (%v) before accepting on %s:\n%s", name, waitErr, addr, out)
			default:
			}
			if time.Now().After(deadline) {
				out, _ := os.ReadFile(logFile)
				t.Fatalf("haproxy %s does not accept on %s after 10s: %v\n%s", name, addr, err, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return cmd.Process.Pid
}
