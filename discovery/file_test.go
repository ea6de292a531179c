package discovery

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/internal/configfile"
	"github.com/straitmesh/strait/internal/fuzzseed"
	"github.com/straitmesh/strait/internal/metricstest"
)

func TestParseFile(t *testing.T) {
	for _, name := range []string{"valid.yaml", "valid.json"} {
		data, err := os.ReadFile(filepath.Join("testdata/services", name))
		if err != nil {
			t.Fatal(err)
		}
		svcs, err := ParseFile(name, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(svcs) == 0 || svcs[0].Key() != "demo/ledger" || len(svcs[0].Endpoints) == 0 {
			t.Errorf("%s: got %+v", name, svcs)
		}
	}
	data, _ := os.ReadFile("testdata/services/valid.yaml")
	svcs, _ := ParseFile("valid.yaml", data)
	want := Service{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data": "pii"},
		Ports:     []Port{{Name: "http", Port: 8080, Protocol: "http"}, {Port: 9090, TargetPort: 19090}},
		Endpoints: []string{"10.0.1.7", "10.0.1.8"}}
	if !reflect.DeepEqual(svcs[0], want) {
		t.Errorf("valid.yaml: got %+v, want %+v", svcs[0], want)
	}
	if svcs, err := ParseFile("empty.yaml", []byte("services: []\n")); err != nil || svcs == nil || len(svcs) != 0 {
		t.Errorf("services: [] gave %v, %v; want an empty list", svcs, err)
	}
}

// TestParseFileProblems: every problem names the file, its line and the
// key, all at once.
func TestParseFileProblems(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"problems.yaml", mustRead(t, "testdata/services/problems.yaml"), []string{
			"problems.yaml:7:5: key services.0.weight: unknown key",
			"problems.yaml:9:12: key services.1.ports: expected a list",
		}},
		{"invalid values", "services:\n  - namespace: demo\n    name: Ledger\n    ports:\n      - {port: 70000, protocol: udp}\n    endpoints: [\"\"]\n", []string{
			"invalid values:3:5: key services.0.name: \"Ledger\" is not a DNS label",
			"invalid values:5:10: key services.0.ports.0.port: 70000 out of range 1-65535",
			"invalid values:5:23: key services.0.ports.0.protocol: want one of tcp, http, http2, grpc, found \"udp\"",
			"invalid values:6:17: key services.0.endpoints.0: empty address",
		}},
		{"syntax", "services:\n  - [unclosed\n", []string{"syntax:"}},
		{"empty", "", []string{"no services key"}},
		{"comments only", "# nothing yet\n", []string{"no services key"}},
		{"no services key", "other: 1\n", []string{"key other: unknown key"}},
		{"not a mapping", "- a\n", []string{"not a mapping:1:1: expected a mapping"}},
		{"null services", "services:\n", []string{"no services key"}},
		{"alias", "a: &a [1]\nservices: *a\n", []string{"alias"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFile(c.name, []byte(c.doc))
			var ce *configfile.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want a *configfile.Error", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "invalid services file") {
				t.Errorf("error %q does not say it is about the services file", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// waitFor polls cond every 10ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// Written beside and renamed over, as deployment tools do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const oneService = "services:\n  - {namespace: demo, name: a, ports: [{port: 80}], endpoints: [10.0.0.1]}\n"
const twoServices = oneService + "  - {namespace: demo, name: b, ports: [{port: 81}], endpoints: [10.0.0.2]}\n"

func TestFileFollowsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	writeFile(t, path, oneService)
	reg := prometheus.NewRegistry()
	f, err := NewFile(path, FileOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := len(f.Services()); n != 1 {
		t.Fatalf("start: %d services, want 1", n)
	}
	writeFile(t, path, twoServices)
	select {
	case <-f.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled within 5s of a rewrite")
	}
	if n := len(f.Services()); n != 2 {
		t.Fatalf("after rewrite: %d services, want 2", n)
	}
	// An edit in place (truncate and write) is seen too.
	if err := os.WriteFile(path, []byte(oneService), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "in-place edit read", func() bool { return len(f.Services()) == 1 })
	if got := metricstest.Sum(t, reg, "strait_discovery_file_reloads_total", map[string]string{"result": "ok"}); got < 2 {
		t.Errorf("reloads ok = %v, want at least 2", got)
	}
}

func TestFileKeepsLastGoodList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	writeFile(t, path, twoServices)
	reg := prometheus.NewRegistry()
	f, err := NewFile(path, FileOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, bad := range []string{"services:\n  - [unclosed\n", "", "services:\n  - {namespace: demo, name: a, ports: []}\n"} {
		before := metricstest.Sum(t, reg, "strait_discovery_file_reloads_total", map[string]string{"result": "invalid"})
		writeFile(t, path, bad)
		waitFor(t, 5*time.Second, "invalid file counted", func() bool {
			return metricstest.Sum(t, reg, "strait_discovery_file_reloads_total", map[string]string{"result": "invalid"}) > before
		})
		if n := len(f.Services()); n != 2 {
			t.Fatalf("after writing %q: %d services, want the last good 2", bad, n)
		}
		if v := metricstest.Sum(t, reg, "strait_discovery_file_valid", nil); v != 0 {
			t.Errorf("strait_discovery_file_valid = %v while the file is invalid, want 0", v)
		}
	}
	writeFile(t, path, oneService)
	waitFor(t, 5*time.Second, "valid file read again", func() bool { return len(f.Services()) == 1 })
	if v := metricstest.Sum(t, reg, "strait_discovery_file_valid", nil); v != 1 {
		t.Errorf("strait_discovery_file_valid = %v after a good file, want 1", v)
	}
}

func TestNewFileRefusesBadFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewFile(filepath.Join(dir, "missing.yaml"), FileOptions{}); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, "bad.yaml")
	writeFile(t, path, "services:\n  - {namespace: demo, name: a, ports: [{port: 0}]}\n")
	_, err := NewFile(path, FileOptions{})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:2:") || !strings.Contains(err.Error(), "services.0.ports.0.port") {
		t.Errorf("bad file: %v", err)
	}
}

// FuzzParseFile: ParseFile never panics, every failure is a
// *configfile.Error with problems, and what it accepts passes Validate.
func FuzzParseFile(f *testing.F) {
	fuzzseed.Files(f, "testdata/services/*")
	f.Fuzz(func(t *testing.T, data []byte) {
		svcs, err := ParseFile("fuzz.yaml", data)
		if err != nil {
			var ce *configfile.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("ParseFile returned %T with no problems: %v", err, err)
			}
			_ = ce.Error()
			return
		}
		if err := Validate("services.", svcs); err != nil {
			t.Fatalf("accepted a list Validate refuses: %v", err)
		}
	})
}

// TestFileMetricsAreDocumented: every strait_discovery_file_* series is in
// docs/metrics.md.
func TestFileMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "services.yaml")
	writeFile(t, path, oneService)
	f, err := NewFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []prometheus.Collector{f.reloads, f.valid} {
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		d := (<-ch).String()
		name := d[strings.Index(d, `fqName: "`)+9:]
		name = name[:strings.Index(name, `"`)]
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("%s is not in docs/metrics.md", name)
		}
	}
}

// TestExampleServicesFile: the example a VM operator starts from parses.
func TestExampleServicesFile(t *testing.T) {
	data, err := os.ReadFile("../deploy/examples/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := ParseFile("services.yaml", data)
	if err != nil || len(svcs) != 2 {
		t.Fatalf("deploy/examples/services.yaml: %d services, %v", len(svcs), err)
	}
}
