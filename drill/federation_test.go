package drill_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/drill"
)

const fedDoc = `apiVersion: strait.io/v1
kind: Federation
clusters:
  - name: eu-1
    region: eu-west
    cloud: aws
    gateways:
      - {name: a, admin: 127.0.0.1:1000, connect: 127.0.0.1:1001}
      - {name: b, admin: 127.0.0.1:1010, connect: 127.0.0.1:1011}
  - name: eu-2
    region: eu-west
    cloud: gcp
    gateways:
      - {admin: 127.0.0.1:2000, imports: {ns/svc:80: 127.0.0.1:2080}}
  - name: us-1
    region: us-east
    cloud: aws
    gateways:
      - {admin: 127.0.0.1:3000, connect: 127.0.0.1:3001}
`

func TestParseFederation(t *testing.T) {
	f, err := drill.ParseFederation("fed.yaml", []byte(fedDoc))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Clusters) != 3 || f.Clusters[1].Gateways[0].Name != "gw-0" || f.Clusters[1].Gateways[0].Imports["ns/svc:80"] != "127.0.0.1:2080" {
		t.Fatalf("parsed %+v", f)
	}
	if got := f.Infos(); len(got) != 3 || got[2] != (drill.ClusterInfo{Name: "us-1", Region: "us-east", Cloud: "aws"}) {
		t.Errorf("Infos = %+v", got)
	}
}

func TestParseFederationProblems(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"misspelled key", "    region: us-east", "    regoin: us-east", `fed.yaml:16:5: key clusters.2.regoin: unknown key (did you mean "region"?)`},
		{"bad admin address", "admin: 127.0.0.1:3000", "admin: nowhere", "clusters.2.gateways.0.admin: expected the gateway's admin address host:port"},
		{"cluster twice", "name: us-1", "name: eu-2", "clusters.2.name: cluster eu-2 is listed twice"},
		{"gateway twice", "{name: b,", "{name: a,", "gateway a is listed twice in cluster eu-1"},
		{"bad import", "ns/svc:80:", "ns/svc:", "clusters.1.gateways.0.imports: ns/svc: expected namespace/name:port"},
		{"wrong kind", "kind: Federation", "kind: Drill", `kind: expected "Federation", found "Drill"`},
		{"not a region", "region: us-east", "region: US_East", `clusters.2.region: expected a region (a DNS label), found "US_East"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(fedDoc, tc.old) {
				t.Fatalf("no %q to change", tc.old)
			}
			_, err := drill.ParseFederation("fed.yaml", []byte(strings.Replace(fedDoc, tc.old, tc.new, 1)))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadFederationReadsTokens(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	doc := strings.Replace(fedDoc, "{admin: 127.0.0.1:3000,", "{admin: 127.0.0.1:3000, adminTokenFile: "+tok+",", 1)
	p := filepath.Join(dir, "fed.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := drill.LoadFederation(p); err == nil || !strings.Contains(err.Error(), "clusters[2].gateways[0].adminTokenFile") {
		t.Fatalf("missing token file: %v", err)
	}
	if err := os.WriteFile(tok, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := drill.LoadFederation(p); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty token file: %v", err)
	}
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := drill.LoadFederation(p); err != nil {
		t.Fatal(err)
	}
}

const planDrill = `apiVersion: strait.io/v1
kind: Drill
metadata: {name: p}
duration: 2m
traffic:
  - {name: t, from: [eu-2], to: ns/svc:80, rate: 5}
timeline:
  - {name: kill-a, at: 1s, kind: kill, cluster: eu-1, gateway: a}
  - {name: lose-eu, at: 2s, kind: lose-region, region: eu-west}
  - {name: split, at: 3s, kind: partition, regions: [eu-west, us-east]}
  - {name: slow, at: 4s, kind: latency, link: [eu-2, us-1], delay: 50ms, jitter: 5ms}
  - {name: lossy, at: 5s, kind: loss, link: [eu-1, us-1], percent: 0.5}
  - {name: drain-us, at: 6s, kind: drain, cluster: us-1}
  - {name: back, at: 7s, kind: restore, step: lose-eu}
`

func TestPlan(t *testing.T) {
	f, err := drill.ParseFederation("fed.yaml", []byte(fedDoc))
	if err != nil {
		t.Fatal(err)
	}
	d, err := drill.Parse("p.yaml", []byte(planDrill))
	if err != nil {
		t.Fatal(err)
	}
	plans, err := f.Plan(d, "r1")
	if err != nil {
		t.Fatal(err)
	}
	type act struct{ cluster, gw, kind, peers string }
	acts := func(p drill.StepPlan) []act {
		var out []act
		for _, a := range p.Actions {
			if a.Fault.ID != "p."+p.Step.Name+".r1" {
				t.Errorf("%s: fault id %q", p.Step.Name, a.Fault.ID)
			}
			out = append(out, act{a.Cluster, a.Gateway.Name, string(a.Fault.Kind), strings.Join(a.Fault.Peers, ",")})
		}
		return out
	}
	for i, want := range []struct {
		acts []act
		down []string
	}{
		// One gateway of two: the cluster is not down.
		{[]act{{"eu-1", "a", "kill", ""}}, nil},
		{[]act{{"eu-1", "a", "kill", ""}, {"eu-1", "b", "kill", ""}, {"eu-2", "gw-0", "kill", ""}}, []string{"eu-1", "eu-2"}},
		{[]act{{"eu-1", "a", "partition", "us-1"}, {"eu-1", "b", "partition", "us-1"}, {"eu-2", "gw-0", "partition", "us-1"}, {"us-1", "gw-0", "partition", "eu-1,eu-2"}}, nil},
		{[]act{{"eu-2", "gw-0", "latency", "us-1"}, {"us-1", "gw-0", "latency", "eu-2"}}, nil},
		{[]act{{"eu-1", "a", "loss", "us-1"}, {"eu-1", "b", "loss", "us-1"}, {"us-1", "gw-0", "loss", "eu-1"}}, nil},
		{[]act{{"us-1", "gw-0", "drain", ""}}, []string{"us-1"}},
		{nil, nil},
	} {
		p := plans[i]
		if got := acts(p); !slices.Equal(got, want.acts) {
			t.Errorf("step %s: actions %+v, want %+v", p.Step.Name, got, want.acts)
		}
		if !slices.Equal(p.Down, want.down) {
			t.Errorf("step %s: down %v, want %v", p.Step.Name, p.Down, want.down)
		}
		if p.Touches == "" {
			t.Errorf("step %s: no touches", p.Step.Name)
		}
	}
	if a := plans[3].Actions[0].Fault; time.Duration(a.Delay) != 50*time.Millisecond || time.Duration(a.Jitter) != 5*time.Millisecond {
		t.Errorf("latency fault %+v", a)
	}
	if a := plans[4].Actions[0].Fault; a.Percent != 0.5 {
		t.Errorf("loss fault %+v", a)
	}
	if len(plans[2].Cut) != 1 || !slices.Equal(plans[2].Cut[0][1], []string{"us-1"}) {
		t.Errorf("partition cut %v", plans[2].Cut)
	}
	if !strings.Contains(plans[6].Touches, "undoes lose-eu") {
		t.Errorf("restore touches %q", plans[6].Touches)
	}
}

func TestCheckNamesWhatTheFederationLacks(t *testing.T) {
	f, err := drill.ParseFederation("fed.yaml", []byte(fedDoc))
	if err != nil {
		t.Fatal(err)
	}
	d, err := drill.Parse("p.yaml", []byte(strings.NewReplacer("from: [eu-2]", "from: [eu-3]", "gateway: a", "gateway: c",
		"region: eu-west", "region: ap-south").Replace(planDrill)))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Check(d)
	for _, want := range []string{
		`traffic[0] (t).from: no cluster eu-3 in the federation (did you mean "eu-1"?)`,
		"timeline[0] (kill-a): cluster eu-1 has no gateway c",
		"timeline[1] (lose-eu): no cluster of the federation is in region ap-south",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v\nwant %q", err, want)
		}
	}
	if _, err := f.Plan(d, "x"); err == nil {
		t.Error("Plan of a drill that does not fit: no error")
	}
}

func TestLibraryFitsTheMulticloudFederation(t *testing.T) {
	data, err := os.ReadFile("../deploy/examples/multicloud/federation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := drill.ParseFederation("federation.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(examplesDir + "/*.yaml")
	if len(files) < 7 {
		t.Fatalf("library: %d drills", len(files))
	}
	for _, file := range files {
		d, err := drill.LoadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Plan(d, "t"); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// The federation file in docs/drills.md parses.
func TestDocsFederationParses(t *testing.T) {
	doc, err := os.ReadFile("../docs/drills.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(doc), "```yaml\napiVersion: strait.io/v1\nkind: Federation\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/drills.md has no federation file example")
	}
	if _, err := drill.ParseFederation("docs/drills.md", []byte("apiVersion: strait.io/v1\nkind: Federation\n"+block)); err != nil {
		t.Fatal(err)
	}
}
