package lab_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/internal/freeport"
)

// Real `strait gateway` processes for the tests and benchmarks that run
// the gateway as users deploy it (the process drill test, make bench-l7,
// the process figures of make bench-dataplane): the binary built with go
// build, certificates from `strait ca`, one config file per gateway
// checked with --check, every address on 127.0.0.1.

// procSpec is one gateway of a procFederation: its cluster, its region
// and the config keys beyond listen, tls and gossip (imports, services,
// tunnels, timeouts), as YAML.
type procSpec struct{ name, region, extra string }

// procFederation is `strait gateway` processes that gossip with each
// other, killed when the test ends.
type procFederation struct {
	names []string // in the order of the specs
	gw    map[string]*straitProc
	admin map[string]string // admin addresses
}

// logs is the tail of every gateway's log, for failure messages.
func (f *procFederation) logs() string {
	var b strings.Builder
	for _, name := range f.names {
		fmt.Fprintf(&b, "--- gateway %s:\n%s\n", name, f.gw[name].logTail(3000))
	}
	return b.String()
}

// straitProc is one `strait gateway` process, killed when the test ends.
type straitProc struct {
	cmd     *exec.Cmd
	logFile string
	exited  chan struct{}
	waitErr error
}

func (p *straitProc) logTail(n int) string {
	b, _ := os.ReadFile(p.logFile)
	return tail(b, n)
}

// portOf is the port of a host:port address.
func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// startProcFederationConnect makes a CA and a certificate per gateway
// with `strait ca` (bin, from buildStrait), writes each gateway's config
// file, checks it with --check and starts the gateways, each joining the
// others' gossip, with listen.connect from connect (by cluster; none where
// it has no entry). It returns once every gateway named in ready is ready
// and its status satisfies ready[name].
func startProcFederationConnect(t *testing.T, bin string, specs []procSpec, ready map[string]func(admin.Status) bool, connect map[string]string) *procFederation {
	t.Helper()
	dir := t.TempDir()
	strait := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("strait %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	caDir := filepath.Join(dir, "ca")
	strait("ca", "init", "--dir", caDir)
	key := make([]byte, 32)
	rand.Read(key)
	gossipKey := base64.StdEncoding.EncodeToString(key)

	gossip := map[string]string{}
	for _, s := range specs {
		gossip[s.name] = freePort(t)
	}
	f := &procFederation{gw: map[string]*straitProc{}, admin: map[string]string{}}
	for _, s := range specs {
		f.names = append(f.names, s.name)
		tlsDir := filepath.Join(dir, s.name)
		strait("ca", "issue", "--dir", caDir, "--cluster", s.name, "--region", s.region, "--out", tlsDir)
		var join []string
		for _, o := range specs {
			if o.name != s.name {
				join = append(join, strconv.Quote(gossip[o.name]))
			}
		}
		f.admin[s.name] = freePort(t)
		cfg := fmt.Sprintf(`cluster: %s
region: %s
listen: {data: %q, admin: %q, connect: %q, passthrough: ""}
tls: {cert: %[6]s/cert.pem, key: %[6]s/key.pem, ca: %[6]s/ca.pem}
gossip: {bind: %q, key: %s, profile: local, join: [%s]}
%s`, s.name, s.region, freePort(t), f.admin[s.name], connect[s.name], tlsDir, gossip[s.name], gossipKey, strings.Join(join, ", "), s.extra)
		file := filepath.Join(dir, s.name+".yaml")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			t.Fatalf("write %s: %v", file, err)
		}
		strait("gateway", "--config", file, "--check")
		f.gw[s.name] = startStraitGateway(t, bin, file, filepath.Join(dir, s.name+".log"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, ok := range ready {
		var st admin.Status
		var err error
		for {
			st, err = admin.FetchStatus(ctx, f.admin[name])
			if err == nil && st.Ready && ok(st) {
				break
			}
			for other, p := range f.gw {
				select {
				case <-p.exited:
					t.Fatalf("gateway %s exited (%v) while the federation formed\n%s", other, p.waitErr, f.logs())
				default:
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("gateway %s never ready with the services it waits for (ready %v, clusters %+v, last error %v)\n%s",
					name, st.Ready, st.Clusters, err, f.logs())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return f
}

// exportsHealthy tells whether st shows cluster reachable and exporting
// svc:port with a healthy endpoint.
func exportsHealthy(st admin.Status, cluster, svc string, port int) bool {
	for _, c := range st.Clusters {
		if c.Cluster != cluster || !c.Reachable {
			continue
		}
		for _, s := range c.Services {
			if s.Service == svc && s.Healthy > 0 {
				for _, p := range s.Ports {
					if p == port {
						return true
					}
				}
			}
		}
	}
	return false
}

// buildStrait builds cmd/strait of the work tree into a directory of
// the test and returns the binary.
func buildStrait(t *testing.T) string {
	t.Helper()
	return goBuildStrait(t, "", t.TempDir())
}

// goBuildStrait builds the cmd/strait of the module in src ("": the one
// the test runs in) into dir.
func goBuildStrait(t *testing.T, src, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build strait: %v", err)
	}
	bin := filepath.Join(dir, "strait")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/straitmesh/strait/cmd/strait")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/strait (in %q): %v\n%s", src, err, out)
	}
	return bin
}

// startStraitGateway runs `strait gateway --config cfg`, its output in
// logFile, and kills it when the test ends.
func startStraitGateway(t *testing.T, bin, cfg, logFile string) *straitProc {
	t.Helper()
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatalf("gateway log: %v", err)
	}
	p := &straitProc{cmd: exec.Command(bin, "gateway", "--config", cfg), logFile: logFile, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start strait gateway --config %s: %v", cfg, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		log.Close()
	})
	return p
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.Get(t)))
}
