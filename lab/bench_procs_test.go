//go:build bench

package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
)

// Measurements of `strait gateway` processes (procs_test.go) for the
// benchmarks.

// rssKiB is the process's resident memory (VmRSS of /proc/PID/status).
func (p *straitProc) rssKiB() (int64, error) {
	return procStatusKiB(p.cmd.Process.Pid, "VmRSS")
}

// procStatusKiB reads a "Name: N kB" field of /proc/pid/status.
func procStatusKiB(pid int, field string) (int64, error) {
	file := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %s: %q is not kB", file, field, rest)
		}
		return kb, nil
	}
	return 0, fmt.Errorf("%s: no %s", file, field)
}

// buildStraitAt builds cmd/strait as of the git revision rev (git archive
// of the repository the test runs in), for a comparison in one run.
func buildStraitAt(t *testing.T, rev string) string {
	t.Helper()
	src, dir := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	archive := exec.CommandContext(ctx, "sh", "-c", `cd "$(git rev-parse --show-toplevel)" && git archive "$1" | tar -x -C "$2"`, "sh", rev, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", rev, err, out)
	}
	return goBuildStrait(t, src, dir)
}

// kill sends SIGKILL and waits until the process is gone.
func (p *straitProc) kill() error {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL pid %d: %w", p.cmd.Process.Pid, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("pid %d still running 5s after SIGKILL", p.cmd.Process.Pid)
	}
}

// startProcFederation is startProcFederationConnect without connect
// ports.
func startProcFederation(t *testing.T, bin string, specs []procSpec, ready map[string]func(admin.Status) bool) *procFederation {
	t.Helper()
	return startProcFederationConnect(t, bin, specs, ready, nil)
}
