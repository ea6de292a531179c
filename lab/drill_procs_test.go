package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/straitmesh/strait/drill"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/lab"
)

// multicloudProcs runs deploy/examples/multicloud as separate `strait
// gateway` processes on loopback: aws-eu-west-1 and dc-paris-1 (eu-west)
// serve billing/ledger (a demo service each), gcp-eu-central-1 imports
// it, aws-us-east-1 is the other side of the ocean; every gateway
// enforces the example's residency.yaml and has fault mode on. It writes
// the federation file a drill needs and returns its path and the binary.
func multicloudProcs(t *testing.T) (bin, fedFile string, fed *procFederation) {
	t.Helper()
	policy, err := filepath.Abs("../deploy/examples/multicloud/residency.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ledger := func(cluster, region string) string {
		svc, err := lab.StartDemo("127.0.0.1:0", "billing/ledger", cluster, region)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		return fmt.Sprintf(`services:
  - namespace: billing
    name: ledger
    labels: {data-class: pii-eu}
    ports: [{name: http, port: 8080, targetPort: %s, protocol: http}]
    endpoints: [127.0.0.1]
`, portOf(svc.Addr()))
	}
	connect := map[string]string{}
	importAddr := freePort(t)
	common := func(name, cloud string) string {
		connect[name] = freePort(t)
		return fmt.Sprintf("cloud: %s\nfaults: {enabled: true}\nresidency: {policy: %s}\ntimeouts: {connect: 1s, budget: 2s, drain: 1s}\n",
			cloud, policy)
	}
	bin = buildStrait(t)
	specs := []procSpec{
		{"aws-eu-west-1", "eu-west", common("aws-eu-west-1", "aws") + ledger("aws-eu-west-1", "eu-west")},
		{"dc-paris-1", "eu-west", common("dc-paris-1", "onprem") + ledger("dc-paris-1", "eu-west")},
		{"gcp-eu-central-1", "eu-central", common("gcp-eu-central-1", "gcp") +
			fmt.Sprintf("imports:\n  - {service: billing/ledger, port: 8080, listen: %q, protocol: http, namespace: eu-customers}\n", importAddr)},
		{"aws-us-east-1", "us-east", common("aws-us-east-1", "aws")},
	}
	// Every gateway ready (a drill checks every admin API first), and the
	// ledger's importer sees both EU sites.
	ready := func(admin.Status) bool { return true }
	fed = startProcFederationConnect(t, bin, specs, map[string]func(admin.Status) bool{
		"gcp-eu-central-1": func(st admin.Status) bool {
			return exportsHealthy(st, "aws-eu-west-1", "billing/ledger", 8080) && exportsHealthy(st, "dc-paris-1", "billing/ledger", 8080)
		},
		"aws-eu-west-1": ready, "dc-paris-1": ready, "aws-us-east-1": ready,
	}, connect)
	clouds := map[string]string{"aws-eu-west-1": "aws", "dc-paris-1": "onprem", "gcp-eu-central-1": "gcp", "aws-us-east-1": "aws"}
	f := drill.Federation{APIVersion: drill.APIVersion, Kind: drill.FederationKind}
	for _, s := range specs {
		g := drill.FederationGateway{Name: "gw-0", Admin: fed.admin[s.name], Connect: connect[s.name]}
		if s.name == "gcp-eu-central-1" {
			g.Imports = map[string]string{"billing/ledger:8080": importAddr}
		}
		f.Clusters = append(f.Clusters, drill.FederationCluster{Name: s.name, Region: s.region, Cloud: clouds[s.name], Gateways: []drill.FederationGateway{g}})
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	fedFile = filepath.Join(t.TempDir(), "federation.json")
	if err := os.WriteFile(fedFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, fedFile, fed
}

// writeDrill writes a drill file for the processes' federation.
func writeDrill(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "drill.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The library's lose-a-cluster, shortened, run by `strait drill run` on
// the multicloud example as separate gateway processes: it passes, and
// its JSON, JUnit and HTML outputs agree.
func TestDrillOnGatewayProcesses(t *testing.T) {
	bin, fedFile, fed := multicloudProcs(t)
	lib, err := os.ReadFile("../deploy/examples/drills/lose-a-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	short := strings.NewReplacer("duration: 2m", "duration: 14s", "at: 20s", "at: 4s", "at: 80s", "at: 10s",
		"maxAddedP99: 100ms", "maxAddedP99: 500ms").Replace(string(lib))
	if short == string(lib) {
		t.Fatal("the library drill changed: nothing shortened")
	}
	file := writeDrill(t, short)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "drill", "run", file, "--federation", fedFile, "--lease", "3s",
		"--json", filepath.Join(out, "result.json"), "--junit", filepath.Join(out, "junit.xml"), "--html", filepath.Join(out, "report.html"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("strait drill run: %v\nstdout:\n%s\nstderr:\n%s\n%s", err, stdout.String(), stderr.String(), fed.logs())
	}
	if !strings.Contains(stdout.String(), "PASS") {
		t.Errorf("summary without PASS:\n%s", stdout.String())
	}
	var res drill.Result
	b, err := os.ReadFile(filepath.Join(out, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if !res.Pass || len(res.Verdicts) < 4 || len(res.Failovers) == 0 || res.Failovers[0].Cluster != "dc-paris-1" {
		t.Errorf("result: pass %v, verdicts %+v, failovers %+v", res.Pass, res.Verdicts, res.Failovers)
	}
	var suite struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	jb, err := os.ReadFile(filepath.Join(out, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(jb, &suite); err != nil {
		t.Fatalf("junit: %v\n%s", err, jb)
	}
	if suite.Tests != len(res.Verdicts) || suite.Failures != 0 {
		t.Errorf("junit: %d tests, %d failures; result has %d verdicts", suite.Tests, suite.Failures, len(res.Verdicts))
	}
	if html, err := os.ReadFile(filepath.Join(out, "report.html")); err != nil || !bytes.Contains(html, []byte("lose-a-cluster")) {
		t.Errorf("html report: %v", err)
	}
}

// A drill process killed in the middle of a fault leaves nothing behind:
// the gateway undoes the fault when its lease runs out.
func TestKilledDrillsFaultUndoesItself(t *testing.T) {
	bin, fedFile, fed := multicloudProcs(t)
	file := writeDrill(t, `apiVersion: strait.io/v1
kind: Drill
metadata: {name: long-kill}
duration: 5m
traffic:
  - {name: eu-ledger, from: [gcp-eu-central-1], to: billing/ledger:8080, rate: 5}
timeline:
  - {name: kill-paris, at: 1s, kind: kill, cluster: dc-paris-1}
`)
	const lease = 2 * time.Second
	cmd := exec.Command(bin, "drill", "run", file, "--federation", fedFile, "--lease", lease.String())
	logFile := filepath.Join(t.TempDir(), "drill.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	output := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	exited := make(chan struct{})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	paris := fed.admin["dc-paris-1"]
	deadline := time.Now().Add(30 * time.Second)
	for len(activeFaults(t, paris)) == 0 {
		select {
		case <-exited:
			t.Fatalf("the drill exited (%v) before its fault was in place:\n%s", waitErr, output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the drill never put its fault on dc-paris-1:\n%s\n%s", output(), fed.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Past a renewal, so that the lease runs from the last one.
	time.Sleep(lease)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	for len(activeFaults(t, paris)) > 0 {
		if time.Since(killed) > lease+2*time.Second {
			t.Fatalf("fault still held %s after the drill died (lease %s)", time.Since(killed), lease)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("fault undone %s after the drill died (lease %s)", time.Since(killed).Round(time.Millisecond), lease)
	// And the gateway serves again: ready, and the ledger reaches it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + paris + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dc-paris-1 not ready after its fault was undone\n%s", fed.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
