package kubetest

import (
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// waits maps a started *exec.Cmd to the channel closed when it exited.
var waits sync.Map

// childAttr makes a child die with the test process, so that a test
// killed by its timeout leaves no etcd or API server behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// stopProcess sends SIGTERM, waits up to 10 s, then kills.
func stopProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	v, ok := waits.Load(cmd)
	if !ok {
		cmd.Process.Kill()
		cmd.Wait()
		return
	}
	done := v.(chan struct{})
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	waits.Delete(cmd)
}

// killProcess kills at once and waits for the exit.
func killProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Kill()
	if v, ok := waits.Load(cmd); ok {
		<-v.(chan struct{})
		waits.Delete(cmd)
	}
}

// waitReady polls ready every 50ms until it holds; it fails when the
// process exits first or within passes.
func waitReady(exited <-chan struct{}, within time.Duration, ready func() bool) error {
	deadline := time.Now().Add(within)
	for !ready() {
		select {
		case <-exited:
			return fmt.Errorf("exited at start")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s", within)
		}
	}
	return nil
}
