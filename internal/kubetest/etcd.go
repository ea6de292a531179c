package kubetest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/freeport"
)

// etcdPackage is the Debian package that provides etcd.
const etcdPackage = "etcd-server"

// etcdBinary returns the path of etcd, installing Debian's etcd-server
// with apt-get when it is missing and the test runs as root.
func etcdBinary(t testing.TB) string {
	t.Helper()
	if p, ok := findEtcd(); ok {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skipf("kubetest: etcd is not installed; install Debian's %s package (apt-get install %s)", etcdPackage, etcdPackage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	unlock, err := lockFile(ctx, filepath.Join(os.TempDir(), "strait-kubetest-apt.lock"))
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	defer unlock()
	if p, ok := findEtcd(); ok {
		return p
	}
	t.Logf("kubetest: installing %s with apt-get", etcdPackage)
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "--no-install-recommends", etcdPackage)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		// The package lists may be missing or old: read them once, again.
		if uout, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			t.Fatalf("kubetest: etcd is missing and apt-get update failed: %v\n%s", uerr, tail(uout, 2000))
		}
		if out, err := install(); err != nil {
			t.Fatalf("kubetest: etcd is missing and apt-get install %s failed: %v\n%s", etcdPackage, err, tail(out, 2000))
		}
	}
	p, ok := findEtcd()
	if !ok {
		t.Fatalf("kubetest: apt-get installed %s but no etcd binary is on PATH or in /usr/bin", etcdPackage)
	}
	return p
}

func findEtcd() (string, bool) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, true
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", true
	}
	return "", false
}

// etcd is one etcd member serving clients on loopback.
type etcd struct {
	cmd *exec.Cmd
	url string
	log string
}

// startEtcd starts etcd with its data in dir, and waits until it is healthy.
func startEtcd(t testing.TB, dir string) *etcd {
	t.Helper()
	bin := etcdBinary(t)
	client := "http://127.0.0.1:" + strconv.Itoa(freeport.Get(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freeport.Get(t))
	e := &etcd{url: client, log: filepath.Join(dir, "etcd.log")}
	logf, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	e.cmd = exec.Command(bin,
		"--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=kubetest="+peer, "--initial-cluster-state=new",
		"--logger=zap", "--log-outputs=stderr", "--log-level=warn")
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.SysProcAttr = childAttr()
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("kubetest: start etcd: %v", err)
	}
	cl := &http.Client{Timeout: time.Second}
	err = waitReady(waitProcess(e.cmd), 30*time.Second, func() bool {
		resp, err := cl.Get(client + "/health")
		if err != nil {
			return false
		}
		body := make([]byte, 256)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body[:n]), "true")
	})
	if err != nil {
		e.stop()
		t.Fatalf("kubetest: etcd %v:\n%s", err, readTail(e.log, 3000))
	}
	return e
}

func (e *etcd) stop() { stopProcess(e.cmd) }

// waitProcess returns a channel closed when cmd exits; cmd.Wait is called
// by it, so stopProcess must not call it again.
func waitProcess(cmd *exec.Cmd) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	waits.Store(cmd, done)
	return done
}

func readTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(tail(data, n))
}
