package kubetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Version is the Kubernetes version of the API server the tests run.
const Version = "v1.37.2"

// BinaryEnv names an environment variable that, when set, is the path of
// a kube-apiserver binary to use instead of building one.
const BinaryEnv = "STRAIT_KUBE_APISERVER"

// buildTimeout bounds one build of kube-apiserver.
const buildTimeout = 30 * time.Minute

// Binary returns the path of a kube-apiserver binary, building it first
// when the cache does not hold one (see Build).
func Binary(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin, err := Build(ctx, t.Logf)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return bin
}

// Build returns the path of the kube-apiserver binary built from the
// module in apiserver/, building it into the user's cache directory when
// it is not there yet. The cache entry is keyed by Version and the
// content of that module, so a change to it builds anew. Concurrent
// callers, in this process or others, wait for one build.
func Build(ctx context.Context, logf func(format string, args ...any)) (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, p, err)
		}
		return p, nil
	}
	src, err := sourceDir()
	if err != nil {
		return "", err
	}
	key, err := sourceKey(src)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir() // no HOME: still shared by the processes of one machine
	}
	dir := filepath.Join(cache, "strait", "kube-apiserver-"+Version+"-"+key)
	bin := filepath.Join(dir, "kube-apiserver")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kube-apiserver cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by another process while we waited
	}
	// go test and go run put their toolchain first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build kube-apiserver: %w", err)
	}
	logf("kubetest: building kube-apiserver %s into %s (a cold build takes several minutes)", Version, dir)
	start := time.Now()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildvcs=false", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build kube-apiserver %s in %s: %w\n%s", Version, src, err, tail(out, 4000))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("install kube-apiserver: %w", err)
	}
	logf("kubetest: built kube-apiserver %s in %s", Version, time.Since(start).Round(time.Second))
	return bin, nil
}

// sourceDir is the build module, beside this file.
func sourceDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("kubetest: cannot locate the kube-apiserver build module")
	}
	dir := filepath.Join(filepath.Dir(file), "apiserver")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("kubetest: kube-apiserver build module: %w", err)
	}
	return dir, nil
}

// sourceKey hashes what the build depends on besides the toolchain.
func sourceKey(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum", "main.go"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("kubetest: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(data))
		h.Write(data)
	}
	h.Write([]byte(runtime.Version()))
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// lockFile takes an exclusive lock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
