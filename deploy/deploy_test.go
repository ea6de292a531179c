// Package deploy_test checks what deploy/ ships against a freshly built
// strait binary: every example passes `strait gateway --check`,
// `strait policy check` or `strait drill validate`, the systemd unit passes `systemd-analyze
// verify`, and the binary runs under the unit's MemoryDenyWriteExecute.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Modes of the test binary run as a helper process.
const (
	envMode  = "STRAIT_DEPLOY_TEST_MODE"
	modeMDWE = "mdwe"   // set MemoryDenyWriteExecute, exec self as modeRun
	modeRun  = "mdwe-2" // check it held across exec, exec os.Args[1:]
)

// Linux prctl(2) MemoryDenyWriteExecute, what systemd's
// MemoryDenyWriteExecute=yes enforces with seccomp.
const (
	prSetMDWE            = 65
	prGetMDWE            = 66
	prMDWERefuseExecGain = 1
	protWriteExec        = syscall.PROT_READ | syscall.PROT_WRITE | syscall.PROT_EXEC
	mapPrivateAnon       = syscall.MAP_PRIVATE | syscall.MAP_ANON
	exitMDWEUnsupported  = 75
	exitMDWENotEnforced  = 76
	exitMDWENotInherited = 77
)

func TestMain(m *testing.M) {
	switch os.Getenv(envMode) {
	case modeMDWE:
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetMDWE, prMDWERefuseExecGain, 0); e != 0 {
			fmt.Fprintln(os.Stderr, "prctl(PR_SET_MDWE):", e)
			os.Exit(exitMDWEUnsupported)
		}
		os.Setenv(envMode, modeRun)
		self, _ := os.Executable()
		err := syscall.Exec(self, os.Args, os.Environ())
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(1)
	case modeRun:
		if r, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prGetMDWE, 0, 0); e != 0 || r&prMDWERefuseExecGain == 0 {
			fmt.Fprintln(os.Stderr, "MemoryDenyWriteExecute not kept across exec:", r, e)
			os.Exit(exitMDWENotInherited)
		}
		if b, err := syscall.Mmap(-1, 0, 4096, protWriteExec, mapPrivateAnon); err == nil {
			syscall.Munmap(b)
			fmt.Fprintln(os.Stderr, "a writable and executable mapping was allowed")
			os.Exit(exitMDWENotEnforced)
		}
		os.Unsetenv(envMode)
		err := syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(1)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// strait returns a strait binary built as `make image` builds it.
func strait(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "strait-deploy-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "strait")
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		goBin, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("build strait: %w", err)
			return
		}
		cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", binPath, "github.com/straitmesh/strait/cmd/strait")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build cmd/strait: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// run runs a command for at most a minute.
func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %s %v: %v", name, args, err)
	}
	return out.String(), errb.String(), code
}

// exampleKind is what a YAML file under deploy/ is.
type exampleKind int

const (
	other exampleKind = iota
	gatewayConfig
	residencyPolicy
	drillFile
)

func (k exampleKind) String() string {
	return [...]string{"other", "gateway config", "residency policy", "drill"}[k]
}

// valuesFile names Helm values files (values.yaml, values-eu.yaml,
// eu.values.yaml, eu-values.yaml): the chart's tests render those.
var valuesFile = regexp.MustCompile(`(^values([-._].*)?|[-.]values)\.ya?ml$`)

// classify tells a gateway config (a mapping with a scalar cluster and
// none of a Kubernetes object's apiVersion and kind) from a residency
// policy (kind ResidencyPolicy), a drill (kind Drill) and anything else.
func classify(path string, data []byte) (exampleKind, error) {
	if valuesFile.MatchString(filepath.Base(path)) {
		return other, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return other, fmt.Errorf("%s: not YAML: %w", path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return other, nil
	}
	top := map[string]*yaml.Node{}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		top[m.Content[i].Value] = m.Content[i+1]
	}
	if k := top["kind"]; k != nil && k.Value == "ResidencyPolicy" {
		return residencyPolicy, nil
	}
	if k := top["kind"]; k != nil && k.Value == "Drill" {
		return drillFile, nil
	}
	if top["apiVersion"] != nil || top["kind"] != nil {
		return other, nil
	}
	if c := top["cluster"]; c != nil && c.Kind == yaml.ScalarNode {
		return gatewayConfig, nil
	}
	return other, nil
}

// installedPath is a file an example names where it is installed.
var installedPath = regexp.MustCompile(`/etc/strait/[A-Za-z0-9._-]+`)

// localize returns a copy of a gateway config in dir in which each
// /etc/strait/NAME whose NAME lies beside the example (its policy, a
// services file) names that file instead, so --check reads what the
// example ships with. Other paths (keys, tokens) stay: --check does not
// read them.
func localize(t *testing.T, path string, data []byte, dir string) string {
	t.Helper()
	exDir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	out := installedPath.ReplaceAllFunc(data, func(p []byte) []byte {
		local := filepath.Join(exDir, filepath.Base(string(p)))
		if _, err := os.Stat(local); err == nil {
			t.Logf("%s: reading %s as %s", path, p, local)
			return []byte(local)
		}
		return p
	})
	dst := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(dst, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// checkExample runs the check of its kind on an example and returns what
// is wrong with it, or "".
func checkExample(t *testing.T, bin, path string, data []byte, kind exampleKind) string {
	t.Helper()
	var args []string
	switch kind {
	case gatewayConfig:
		args = []string{"gateway", "--config", localize(t, path, data, t.TempDir()), "--check"}
	case residencyPolicy:
		args = []string{"policy", "check", path}
	case drillFile:
		args = []string{"drill", "validate", path}
	default:
		return fmt.Sprintf("%s: no check for a %v", path, kind)
	}
	out, stderr, code := run(t, bin, args...)
	if code != 0 || !strings.Contains(out, "valid") {
		return fmt.Sprintf("strait %s (%s): exit %d\n%s%s", strings.Join(args, " "), path, code, out, stderr)
	}
	return ""
}

// The check fails on a broken example of each kind.
func TestCheckExampleFails(t *testing.T) {
	bin := strait(t)
	gw, err := os.ReadFile("examples/gateway-vm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := os.ReadFile("examples/residency.yaml")
	if err != nil {
		t.Fatal(err)
	}
	drill, err := os.ReadFile("examples/drills/lose-a-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	brokenPolicy := bytes.Replace(pol, []byte("allowedRegions: [eu]"), []byte("allowedRegions: [mars]"), 1)
	for _, tc := range []struct {
		name, old, new string
		src            []byte
		kind           exampleKind
		beside         []byte // residency.yaml beside the example
		want           string
	}{
		{"gateway config with a misspelled key", "\ngossip:", "\ngosip:", gw, gatewayConfig, pol, "gosip"},
		{"gateway config with a bad address", "bind: 0.0.0.0:8300", "bind: 0.0.0.0:83000", gw, gatewayConfig, pol, "state.bind"},
		{"gateway config naming a broken policy", "", "", gw, gatewayConfig, brokenPolicy, "mars"},
		{"broken policy", "allowedRegions: [eu]", "allowedRegions: [mars]", pol, residencyPolicy, nil, "mars"},
		{"drill with a misspelled fault", "kind: kill", "kind: kil", drill, drillFile, nil, `timeline[0].kind: unknown fault "kil" (did you mean "kill"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(tc.src, []byte(tc.old)) {
				t.Fatalf("nothing to break: no %q", tc.old)
			}
			dir := t.TempDir()
			if tc.beside != nil {
				if err := os.WriteFile(filepath.Join(dir, "residency.yaml"), tc.beside, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			p := filepath.Join(dir, "example.yaml")
			data := bytes.Replace(tc.src, []byte(tc.old), []byte(tc.new), 1)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			problem := checkExample(t, bin, p, data, tc.kind)
			if !strings.Contains(problem, tc.want) {
				t.Errorf("check of the broken example: %q, want a failure naming %q", problem, tc.want)
			}
		})
	}
}

// TestExamplesCheck runs every gateway config under deploy/ through
// `strait gateway --config FILE --check`, every residency policy
// through `strait policy check` and every drill through `strait drill
// validate`. New examples are found by their
// contents; Helm charts and values files are the chart tests' to render.
func TestExamplesCheck(t *testing.T) {
	bin := strait(t)
	found := map[string]exampleKind{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if _, err := os.Stat(filepath.Join(path, "Chart.yaml")); err == nil {
				t.Logf("%s: a Helm chart, skipped", path)
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		kind, err := classify(path, data)
		if err != nil {
			t.Error(err)
			return nil
		}
		found[filepath.ToSlash(path)] = kind
		if kind == other {
			t.Logf("%s: neither a gateway config, a residency policy nor a drill, skipped", path)
			return nil
		}
		t.Run(path, func(t *testing.T) {
			if problem := checkExample(t, bin, path, data, kind); problem != "" {
				t.Error(problem)
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must see what is known to be there.
	for f, want := range map[string]exampleKind{
		"examples/gateway.yaml":                gatewayConfig,
		"examples/gateway-minimal.yaml":        gatewayConfig,
		"examples/gateway-vm.yaml":             gatewayConfig,
		"examples/residency.yaml":              residencyPolicy,
		"examples/drills/lose-a-cluster.yaml":  drillFile,
		"examples/drills/rolling-restart.yaml": drillFile,
	} {
		if got, ok := found[f]; !ok || got != want {
			t.Errorf("%s: classified %v (found %t), want %v", f, got, ok, want)
		}
	}
}

// The classifier against the kinds of YAML deploy/ holds or will.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name, file, yaml string
		want             exampleKind
	}{
		{"gateway config", "gw.yaml", "cluster: a\nregion: r\n", gatewayConfig},
		{"gateway config without region", "gw.yaml", "cluster: a\ntls: {}\n", gatewayConfig},
		{"residency policy", "p.yaml", "apiVersion: strait.io/v1\nkind: ResidencyPolicy\n", residencyPolicy},
		{"drill", "d.yaml", "apiVersion: strait.io/v1\nkind: Drill\n", drillFile},
		{"kubernetes object", "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", other},
		{"helm values with a cluster", "values.yaml", "cluster: a\nregion: r\n", other},
		{"helm values of a site", "values-eu.yaml", "cluster: a\n", other},
		{"helm values, dotted", "eu.values.yaml", "cluster: a\n", other},
		{"services file", "services.yaml", "services: []\n", other},
		{"chart values nesting the config", "gw-chart.yaml", "cluster: {name: a}\n", other},
		{"empty file", "e.yaml", "", other},
		{"a list", "l.yaml", "- a\n", other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := classify(tc.file, []byte(tc.yaml))
			if err != nil || got != tc.want {
				t.Errorf("classify(%s) = %v, %v; want %v", tc.file, got, err, tc.want)
			}
		})
	}
	if _, err := classify("bad.yaml", []byte("a: [\n")); err == nil {
		t.Error("classify of broken YAML: no error")
	}
}

// systemdAnalyze returns the path of systemd-analyze, or skips.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("systemd-analyze not found: install Debian's systemd package (.ci/run does as root)")
	}
	t.Fatal("systemd-analyze not found: install Debian's systemd package (apt-get install systemd; .ci/run does)")
	return ""
}

const unitFile = "systemd/strait-gateway.service"

// unitCopy writes the unit into dir with the strait binary at bin, after
// edit, and returns its path.
func unitCopy(t *testing.T, dir, bin string, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/strait ", bin+" ")
	if edit != nil {
		unit = edit(unit)
	}
	p := filepath.Join(dir, filepath.Base(unitFile))
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the unit, and
// on broken copies of it to show that a mistake is reported: warnings
// count as failures, since systemd ignores an unknown directive.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := systemdAnalyze(t)
	bin := strait(t)
	replace := func(old, new string) func(string) string {
		return func(u string) string {
			if !strings.Contains(u, old) {
				t.Fatalf("the unit has no %q to break", old)
			}
			return strings.Replace(u, old, new, 1)
		}
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		want string // in the output; "" for a clean unit
	}{
		{"shipped unit", nil, ""},
		{"misspelled directive", replace("\nProtectSystem=strict", "\nProtectSystm=strict"), "Unknown key"},
		{"bad value", replace("\nRestartSec=2", "\nRestartSec=soon"), "Failed to parse"},
		{"unknown section", replace("\n[Service]", "\n[Servic]"), "Unknown section"},
		{"missing binary", replace("\nExecStart="+bin, "\nExecStart=/nonexistent/strait"), "is not executable"},
		{"unknown address family", replace("AF_UNIX AF_NETLINK\n", "AF_UNIX AF_NETLNK\n"), "AF_NETLNK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unit := unitCopy(t, t.TempDir(), bin, tc.edit)
			out, stderr, code := run(t, sa, "verify", "--man=no", "--generators=no", unit)
			report := strings.TrimSpace(out + stderr)
			if tc.want == "" {
				if code != 0 || report != "" {
					t.Errorf("systemd-analyze verify %s: exit %d\n%s", unitFile, code, report)
				}
				return
			}
			if !strings.Contains(report, tc.want) {
				t.Errorf("systemd-analyze verify: exit %d, output does not contain %q:\n%s", code, tc.want, report)
			}
		})
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)

// TestSystemdUnitSecurity logs `systemd-analyze security` of the unit
// and holds it to systemd's "OK" band (below 4.0; 1.4 with systemd 252).
func TestSystemdUnitSecurity(t *testing.T) {
	sa := systemdAnalyze(t)
	unit := unitCopy(t, t.TempDir(), strait(t), nil)
	out, stderr, code := run(t, sa, "security", "--offline=true", "--no-pager", unit)
	m := exposure.FindStringSubmatch(out)
	if m == nil {
		if strings.Contains(stderr, "--offline") || strings.Contains(stderr, "unrecognized option") {
			t.Skipf("this systemd-analyze cannot assess a unit offline: %s", stderr)
		}
		t.Fatalf("systemd-analyze security: exit %d, no exposure level:\n%s%s", code, out, stderr)
	}
	t.Logf("systemd-analyze security %s: exposure %s %s", unitFile, m[1], m[2])
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "✗") {
			t.Log(strings.Join(strings.Fields(line), " "))
		}
	}
	if _, _, code := run(t, sa, "security", "--offline=true", "--no-pager", "--threshold=40", unit); code != 0 {
		t.Errorf("exposure %s is above 4.0", m[1])
	}
}

// TestSysusersCreatesTheUser applies the sysusers.d file to an empty
// root: it must create the system user and group strait, home the state
// directory, no login shell.
func TestSysusersCreatesTheUser(t *testing.T) {
	su, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip("systemd-sysusers not found: install Debian's systemd package")
		}
		t.Fatal("systemd-sysusers not found: install Debian's systemd package")
	}
	root := t.TempDir()
	conf, err := os.ReadFile("systemd/strait.sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc", "usr/lib/sysusers.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/sysusers.d/strait.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, su, "--root="+root)
	if code != 0 {
		t.Fatalf("systemd-sysusers: exit %d\n%s%s", code, out, stderr)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var user []string
	for _, l := range strings.Split(string(passwd), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == "strait" {
			user = f
		}
	}
	if user == nil {
		t.Fatalf("no user strait in /etc/passwd:\n%s", passwd)
	}
	if user[2] == "0" || user[5] != "/var/lib/strait" || !strings.HasSuffix(user[6], "nologin") {
		t.Errorf("user strait: uid %s home %s shell %s; want a system uid, /var/lib/strait, nologin", user[2], user[5], user[6])
	}
	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(group), "\nstrait:") && !strings.HasPrefix(string(group), "strait:") {
		t.Errorf("no group strait in /etc/group:\n%s", group)
	}
}

// TestRunsWithMemoryDenyWriteExecute runs a whole federation (`strait
// dev`: TLS, Raft, gossip, tunnels) with the kernel's
// MemoryDenyWriteExecute in force, as the unit's MemoryDenyWriteExecute=yes
// has it: the Go runtime never needs writable and executable memory.
func TestRunsWithMemoryDenyWriteExecute(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("MemoryDenyWriteExecute is Linux's")
	}
	bin := strait(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], bin, "dev", "--ephemeral", "--duration", "1s")
	cmd.Env = append(os.Environ(), envMode+"="+modeMDWE)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case exitMDWEUnsupported:
			t.Skipf("this kernel has no PR_SET_MDWE (Linux 6.3): %s", out)
		case exitMDWENotEnforced, exitMDWENotInherited:
			t.Fatalf("MemoryDenyWriteExecute did not hold: %s", out)
		}
	}
	if err != nil {
		t.Fatalf("strait dev under MemoryDenyWriteExecute: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Stopping the federation") {
		t.Errorf("strait dev did not run to its end:\n%s", out)
	}
}
