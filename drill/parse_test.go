package drill_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/drill"
)

// examplesDir holds the drill library that ships with Strait.
const examplesDir = "../deploy/examples/drills"

// base is a valid drill the problem cases change; its line numbers are
// what the wanted problems cite.
const base = `apiVersion: strait.io/v1
kind: Drill
metadata:
  name: t
duration: 1m
traffic:
  - from: [a]
    to: ns/svc:80
    rate: 10
timeline:
  - {name: k, at: 10s, kind: kill, cluster: a}
  - {name: r, at: 20s, kind: restore, step: k}
`

func problems(t *testing.T, err error) []string {
	t.Helper()
	var de *drill.Error
	if !errors.As(err, &de) {
		t.Fatalf("want a *drill.Error, got %T: %v", err, err)
	}
	var out []string
	for _, p := range de.Problems {
		out = append(out, p.String())
	}
	return out
}

func TestParseFull(t *testing.T) {
	src := `apiVersion: strait.io/v1
kind: Drill
metadata:
  name: full
  description: every field
duration: 5m
traffic:
  - name: eu
    from: [eu-1, eu-2]
    to: billing/ledger:8080
    protocol: http
    rate: 10000
    start: 5s
    duration: 4m
    path: /balance
    headers: {x-data-residency: eu}
  - from: us-1
    to: billing/ledger:5432
    protocol: tcp
    rate: 1
timeline:
  - {name: a, at: 0, kind: kill, cluster: eu-1, gateway: gw-0}
  - {name: b, at: 10s, kind: freeze, cluster: eu-2}
  - {name: c, at: 10s, kind: blackhole, cluster: us-1}
  - {name: d, at: 20s, kind: partition, regions: [eu-west, us-east]}
  - {name: e, at: 20s, kind: partition, clusters: [eu-1, us-1]}
  - {name: f, at: 30s, kind: latency, link: [eu-1, us-1], delay: 200ms, jitter: 20ms}
  - {name: g, at: 30s, kind: loss, link: [eu-1, us-1], percent: 2.5}
  - {name: h, at: 40s, kind: drain, cluster: eu-2}
  - {name: i, at: 50s, kind: lose-region, region: eu-west}
  - {name: j, at: 1m, kind: lose-cloud, cloud: aws}
  - {name: k, at: 2m, kind: restore, step: a}
expect:
  services:
    - {service: billing/ledger:8080, maxFailoverTime: 5s, maxErrorRate: 0, maxAddedP99: 50ms}
    - {service: billing/ledger, maxErrorRate: 100}
  residency:
    - {class: pii-eu, neverReaches: [us-east], refusedWhile: i}
stop:
  errorRateAbove: {percent: 50, for: 10s}
  anyResidencyViolation: true
  gatewayNotReadyFor: 1m
`
	d, err := drill.Parse("full.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	zero, hundred := 0.0, 100.0
	ledger := drill.Service{Namespace: "billing", Name: "ledger", Port: 8080}
	want := &drill.Drill{
		Name: "full", Description: "every field", Duration: 5 * time.Minute,
		Traffic: []drill.Traffic{
			{Name: "eu", From: []string{"eu-1", "eu-2"}, To: ledger, Protocol: "http", Rate: 10000,
				Start: 5 * time.Second, Duration: 4 * time.Minute, Path: "/balance", Headers: map[string]string{"x-data-residency": "eu"}},
			{Name: "traffic[1]", From: []string{"us-1"}, To: drill.Service{Namespace: "billing", Name: "ledger", Port: 5432}, Protocol: "tcp", Rate: 1},
		},
		Timeline: []drill.Step{
			{Name: "a", Kind: drill.Kill, Cluster: "eu-1", Gateway: "gw-0"},
			{Name: "b", At: 10 * time.Second, Kind: drill.Freeze, Cluster: "eu-2"},
			{Name: "c", At: 10 * time.Second, Kind: drill.Blackhole, Cluster: "us-1"},
			{Name: "d", At: 20 * time.Second, Kind: drill.Partition, Regions: []string{"eu-west", "us-east"}},
			{Name: "e", At: 20 * time.Second, Kind: drill.Partition, Clusters: []string{"eu-1", "us-1"}},
			{Name: "f", At: 30 * time.Second, Kind: drill.Latency, Link: []string{"eu-1", "us-1"}, Delay: 200 * time.Millisecond, Jitter: 20 * time.Millisecond},
			{Name: "g", At: 30 * time.Second, Kind: drill.Loss, Link: []string{"eu-1", "us-1"}, Percent: 2.5},
			{Name: "h", At: 40 * time.Second, Kind: drill.Drain, Cluster: "eu-2"},
			{Name: "i", At: 50 * time.Second, Kind: drill.LoseRegion, Region: "eu-west"},
			{Name: "j", At: time.Minute, Kind: drill.LoseCloud, Cloud: "aws"},
			{Name: "k", At: 2 * time.Minute, Kind: drill.Restore, Restores: "a"},
		},
		Expect: drill.Expect{
			Services: []drill.ServiceExpectation{
				{Service: ledger, MaxFailoverTime: 5 * time.Second, MaxErrorRate: &zero, MaxAddedP99: 50 * time.Millisecond},
				{Service: drill.Service{Namespace: "billing", Name: "ledger"}, MaxErrorRate: &hundred},
			},
			Residency: []drill.ResidencyExpectation{{Class: "pii-eu", NeverReaches: []string{"us-east"}, RefusedWhile: "i"}},
		},
		Stop: drill.Stop{
			ErrorRateAbove:        &drill.ErrorRateStop{Percent: 50, For: 10 * time.Second},
			AnyResidencyViolation: true,
			GatewayNotReadyFor:    time.Minute,
		},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", d, want)
	}
}

func TestParseProblems(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"misspelt fault kind", "kind: kill", "kind: kil",
			[]string{`d.yaml:11:30: timeline[0].kind: unknown fault "kil" (did you mean "kill"?)`}},
		{"fault kind far from any", "kind: kill", "kind: explode",
			[]string{`d.yaml:11:30: timeline[0].kind: unknown fault "explode"; expected one of kill, freeze, blackhole, partition, latency, loss, drain, lose-region, lose-cloud, restore`}},
		{"unknown key with a suggestion", "cluster: a}", "clustr: a}",
			[]string{`d.yaml:11:5: timeline[0].cluster: required: the cluster whose gateways the fault hits`,
				`d.yaml:11:36: timeline[0].clustr: unknown key (did you mean "cluster"?)`}},
		{"unknown top-level key", "timeline:\n", "timelines: []\ntimeline:\n",
			[]string{`d.yaml:10:1: timelines: unknown key (did you mean "timeline"?)`}},
		{"a key of another kind", "cluster: a}", "cluster: a, delay: 1s}",
			[]string{`d.yaml:11:48: timeline[0].delay: a kill step takes no delay (it takes cluster, gateway)`}},
		{"restore of a later step", "- {name: r, at: 20s, kind: restore, step: k}", "- {name: r, at: 20s, kind: restore, step: later}\n  - {name: later, at: 30s, kind: drain, cluster: a}",
			[]string{`d.yaml:12:45: timeline[1].step: no earlier step named "later"`}},
		{"restore of a misspelt step", "step: k}", "step: kk}",
			[]string{`d.yaml:12:45: timeline[1].step: no earlier step named "kk" (did you mean "k"?)`}},
		{"restore twice", "step: k}\n", "step: k}\n  - {name: r2, at: 30s, kind: restore, step: k}\n",
			[]string{`d.yaml:13:46: timeline[2].step: step "k" is already restored by the step at line 12`}},
		{"restore of a restore", "step: k}\n", "step: k}\n  - {name: r2, at: 30s, kind: restore, step: r}\n",
			[]string{`d.yaml:13:46: timeline[2].step: step "r" is a restore; name the fault it undid`}},
		{"duplicate step name", "{name: r,", "{name: k,",
			[]string{`d.yaml:12:12: timeline[1].name: step "k" named twice (first at line 11)`}},
		{"offsets out of order", "at: 20s", "at: 5s",
			[]string{`d.yaml:12:19: timeline[1].at: 5s is before the previous step's 10s; list steps in the order they happen`}},
		{"offset past the end", "at: 20s", "at: 2m",
			[]string{`d.yaml:12:19: timeline[1].at: 2m0s is not within the drill's duration 1m0s`}},
		{"negative offset", "at: 10s", "at: -1s",
			[]string{`d.yaml:11:19: timeline[0].at: an offset cannot be negative, found -1s`}},
		{"zero drill duration", "duration: 1m", "duration: 0s",
			[]string{`d.yaml:5:11: duration: expected a positive duration, found 0s`}},
		{"rate too high", "rate: 10", "rate: 10001",
			[]string{`d.yaml:9:11: traffic[0].rate: expected requests per second, an integer from 1 to 10000, found "10001"`}},
		{"rate zero", "rate: 10", "rate: 0",
			[]string{`d.yaml:9:11: traffic[0].rate: expected requests per second, an integer from 1 to 10000, found "0"`}},
		{"service without port", "to: ns/svc:80", "to: ns/svc",
			[]string{`d.yaml:8:9: traffic[0].to: expected a service as namespace/name:port (namespace and name DNS labels, port 1-65535), found "ns/svc"`}},
		{"service with a bad port", "to: ns/svc:80", "to: ns/svc:70000",
			[]string{`d.yaml:8:9: traffic[0].to: expected a service as namespace/name:port (namespace and name DNS labels, port 1-65535), found "ns/svc:70000"`}},
		{"cluster not a DNS label", "from: [a]", "from: [A_1]",
			[]string{`d.yaml:7:12: traffic[0].from[0]: "A_1" is not a cluster name (a DNS label: lower-case letters, digits, '-')`}},
		{"unknown protocol", "rate: 10\n", "rate: 10\n    protocol: grcp\n",
			[]string{`d.yaml:10:15: traffic[0].protocol: unknown protocol "grcp" (did you mean "grpc"?)`}},
		{"headers on tcp", "rate: 10\n", "rate: 10\n    protocol: tcp\n    headers: {x-data-residency: eu}\n",
			[]string{`d.yaml:11:5: traffic[0].headers: tcp traffic has no headers; use http or grpc`}},
		{"bad header name", "rate: 10\n", "rate: 10\n    headers: {\"x data\": eu}\n",
			[]string{`d.yaml:10:15: traffic[0].headers.x data: "x data" is not an HTTP header name`}},
		{"loss above 100", "kind: kill, cluster: a}", "kind: loss, link: [a, b], percent: 101}",
			[]string{`d.yaml:11:59: timeline[0].percent: expected a percentage from 0 to 100, found "101"`}},
		{"link of one cluster", "kind: kill, cluster: a}", "kind: latency, link: [a], delay: 1s}",
			[]string{`d.yaml:11:45: timeline[0].link: expected 2 clusters, found 1`}},
		{"partition of both regions and clusters", "kind: kill, cluster: a}", "kind: partition, regions: [x, y], clusters: [a, b]}",
			[]string{`d.yaml:11:58: timeline[0].clusters: a partition is between two regions or two clusters, not both`}},
		{"expectation without traffic", "timeline:\n", "expect:\n  services:\n    - {service: ns/other, maxErrorRate: 1}\ntimeline:\n",
			[]string{`d.yaml:12:17: expect.services[0].service: no traffic goes to ns/other; an expectation needs traffic to measure`}},
		{"refusedWhile a restore", "step: k}\n", "step: k}\nexpect:\n  residency:\n    - {class: pii, refusedWhile: r}\n",
			[]string{`d.yaml:15:34: expect.residency[0].refusedWhile: step "r" is a restore; name the fault during which the class is refused`}},
		{"stop without its duration", "step: k}\n", "step: k}\nstop:\n  errorRateAbove: {percent: 50}\n",
			[]string{`d.yaml:14:19: stop.errorRateAbove.for: required: how long the rate must hold, e.g. 10s`}},
		{"wrong version and kind", "apiVersion: strait.io/v1\nkind: Drill", "apiVersion: strait.io/v2\nkind: Dril",
			[]string{`d.yaml:1:13: apiVersion: unsupported version "strait.io/v2"; this strait reads "strait.io/v1"`,
				`d.yaml:2:7: kind: expected "Drill", found "Dril"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.old) {
				t.Fatalf("nothing to change: no %q", tc.old)
			}
			_, err := drill.Parse("d.yaml", []byte(strings.Replace(base, tc.old, tc.new, 1)))
			if got := problems(t, err); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// Several problems are reported together, sorted by position, under one
// header naming the file.
func TestParseReportsEveryProblemInOrder(t *testing.T) {
	src := strings.NewReplacer("rate: 10", "rate: 0", "kind: kill", "kind: kil", "name: t", "name: T").Replace(base)
	_, err := drill.Parse("d.yaml", []byte(src))
	want := []string{
		`d.yaml:4:9: metadata.name: "T" is not a DNS label (lower-case letters, digits, '-')`,
		`d.yaml:9:11: traffic[0].rate: expected requests per second, an integer from 1 to 10000, found "0"`,
		`d.yaml:11:30: timeline[0].kind: unknown fault "kil" (did you mean "kill"?)`,
	}
	if got := problems(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if !strings.HasPrefix(err.Error(), "invalid drill d.yaml (3 problems):\n") {
		t.Errorf("header: %q", err.Error())
	}
}

func TestParseDocumentProblems(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"empty", "", `d.yaml: file is empty`},
		{"a list", "- a\n", `d.yaml:1:1: expected a drill (a mapping with apiVersion, kind, metadata, duration, traffic and timeline), found a list`},
		{"not YAML", "a: [\n", `d.yaml:2: YAML syntax error`},
		{"an alias", strings.NewReplacer("cluster: a}", "cluster: &c a}", "step: k}", "step: *c}").Replace(base), `d.yaml:12:45: timeline[1].step: YAML aliases (*name) are not supported`},
		{"too large", "a: " + strings.Repeat("x", drill.MaxFileBytes), `the limit is`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := drill.Parse("d.yaml", []byte(tc.src))
			if got := problems(t, err); len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), tc.want) {
				t.Errorf("problems %q, want one containing %q", got, tc.want)
			}
		})
	}
}

// TestExamplesParse parses every drill of the library in deploy/.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 7 {
		t.Fatalf("%d drills in %s, want the library of at least 7", len(files), examplesDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			d, err := drill.LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if d.Name+".yaml" != filepath.Base(f) {
				t.Errorf("drill %q in %s: name and file should agree", d.Name, f)
			}
			if len(d.Timeline) == 0 || len(d.Traffic) == 0 {
				t.Errorf("%s: a library drill needs traffic and faults", f)
			}
			// Every fault of a library drill is undone before it ends.
			restored := map[string]bool{}
			for _, s := range d.Timeline {
				if s.Kind == drill.Restore {
					restored[s.Restores] = true
				}
			}
			for _, s := range d.Timeline {
				if s.Kind != drill.Restore && !restored[s.Name] {
					t.Errorf("%s: step %s is never restored", f, s.Name)
				}
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := drill.LoadFile(filepath.Join(t.TempDir(), "none.yaml"))
	if got := problems(t, err); len(got) != 1 || !strings.Contains(got[0], "none.yaml: cannot read drill: no such file") {
		t.Errorf("problems %q", got)
	}
}

// invalidFixtures returns the files of testdata/invalid with the problem
// each must produce, from its "# want: " line.
func invalidFixtures(t testing.TB) map[string]string {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid fixtures: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		want, ok := strings.CutPrefix(first, "# want: ")
		if !ok {
			t.Fatalf("%s: first line must be \"# want: <problem>\"", f)
		}
		out[f] = want
	}
	return out
}

func TestInvalidFixtures(t *testing.T) {
	for f, want := range invalidFixtures(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := drill.LoadFile(f)
			if got := problems(t, err); !strings.Contains(strings.Join(got, "\n"), want) {
				t.Errorf("problems:\n  %s\nwant one containing %q", strings.Join(got, "\n  "), want)
			}
		})
	}
}

// The full example in docs/drills.md is the library's lose-a-cluster.yaml.
func TestDocsExampleIsTheLibrarys(t *testing.T) {
	doc, err := os.ReadFile("../docs/drills.md")
	if err != nil {
		t.Fatal(err)
	}
	// The first yaml block that is a drill (others are federation files).
	var block string
	for rest, ok := string(doc), true; ok; {
		_, rest, ok = strings.Cut(rest, "```yaml\n")
		b, after, closed := strings.Cut(rest, "```")
		if ok && closed && strings.Contains(b, "\nkind: Drill\n") {
			block = b
			break
		}
		rest = after
	}
	if block == "" {
		t.Fatal("docs/drills.md has no yaml block of kind Drill")
	}
	fromDocs, err := drill.Parse("docs/drills.md", []byte(block))
	if err != nil {
		t.Fatal(err)
	}
	fromLib, err := drill.LoadFile(filepath.Join(examplesDir, "lose-a-cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromDocs, fromLib) {
		t.Errorf("docs/drills.md's example differs from lose-a-cluster.yaml:\n%+v\n%+v", fromDocs, fromLib)
	}
}
