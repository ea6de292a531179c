package lab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/straitmesh/strait/lab"
)

// startDev starts the dev federation on free ports with spec for t and
// stops it when t ends. ctx bounds the start and whatever the test waits
// for; clusters are the federation's clusters by name.
func startDev(t *testing.T, spec lab.Spec) (ctx context.Context, d *lab.Dev, clusters map[string]lab.ClusterInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	d, err := lab.StartDev(ctx, lab.DevOptions{Ephemeral: true, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	clusters = map[string]lab.ClusterInfo{}
	for _, c := range d.Info().Clusters {
		clusters[c.Name] = c
	}
	return ctx, d, clusters
}

// TestDevTour runs what the tour printed by `strait dev` tells a user to try.
func TestDevTour(t *testing.T) {
	_, d, byName := startDev(t, lab.Spec{})
	info := d.Info()
	var tour strings.Builder
	lab.PrintTour(&tour, info, "strait")

	if len(byName) != 4 || byName["eu-west-1"].Region != "eu-west" || byName["eu-west-2"].Region != "eu-west" ||
		byName["eu-central-1"].Region != "eu-central" || byName["us-east-1"].Region != "us-east" {
		t.Fatalf("topology %+v", info.Clusters)
	}
	for _, tc := range []struct {
		from, service string
		wantRegion    string
	}{
		{"eu-central-1", "ledger", "eu-west"},          // crosses a region, inside pii-eu's regions
		{"eu-west-1", "profile", "eu-central|us-east"}, // crosses cluster and region: both are the same rank from eu-west
		{"eu-west-2", "echo", "eu-west"},               // local
		{"us-east-1", "profile", "us-east"},            // local
		{"eu-central-1", "echo", "eu-central"},         // local
	} {
		c := byName[tc.from]
		if !strings.Contains(tour.String(), c.Connect) && tc.from == "eu-central-1" {
			t.Errorf("tour does not show %s's CONNECT address %s", tc.from, c.Connect)
		}
		resp, r := viaConnect(t, c.Connect, tc.service+".demo.svc.clusterset.local:8080")
		if resp.StatusCode != http.StatusOK || !slices.Contains(strings.Split(tc.wantRegion, "|"), r.Region) || r.Service != "demo/"+tc.service {
			t.Errorf("from %s to demo/%s: %s, served by %s in %s; want region %s", tc.from, tc.service, resp.Status, r.Cluster, r.Region, tc.wantRegion)
		}
		if tc.service != "echo" {
			imp := getJSON(t, &http.Client{Timeout: 10 * time.Second}, "http://"+c.Imports["demo/"+tc.service+":8080"]+"/")
			if !slices.Contains(strings.Split(tc.wantRegion, "|"), imp.Region) {
				t.Errorf("import port from %s to demo/%s served in %s, want %s", tc.from, tc.service, imp.Region, tc.wantRegion)
			}
		}
	}
	// Names are answered only off --ephemeral, which keeps to free ports.
	if strings.Contains(tour.String(), "dig @") || info.Clusters[0].DNS != "" {
		t.Errorf("ephemeral federation with a DNS server (%q):\n%s", info.Clusters[0].DNS, tour.String())
	}
	// The per-import command of the tour is allowed (eu-central-1 -> ledger).
	euc := byName["eu-central-1"]
	if !strings.Contains(tour.String(), "curl -s http://"+euc.Imports["demo/ledger:8080"]+"/") {
		t.Errorf("tour does not show eu-central-1's ledger import")
	}
	// Every gateway's topology page.
	for _, c := range info.Clusters {
		if want := "http://" + c.Admin + "/ui/"; !strings.Contains(tour.String(), want) {
			t.Errorf("tour lacks %s's topology page %s", c.Name, want)
		}
	}
	// The residency commands of the tour.
	use, euw := byName["us-east-1"], byName["eu-west-1"]
	for _, want := range []string{
		"curl -si -x " + use.Connect + " http://ledger.demo.svc.clusterset.local:8080/",
		"curl -s -x " + euw.Connect + " -H 'x-data-residency: eu' http://profile.demo.svc.clusterset.local:8080/",
		"curl -si -x " + use.Connect + " -H 'x-data-residency: eu' http://profile.demo.svc.clusterset.local:8080/",
		"strait policy explain --admin " + byName["eu-central-1"].Admin + " --service demo/ledger --from us-east-1",
	} {
		if !strings.Contains(tour.String(), want) {
			t.Errorf("tour lacks %q:\n%s", want, tour.String())
		}
	}
	// demo/ledger is region-only: us-east-1 does not even know it exists.
	if resp, _ := viaProxy(t, use.Connect, ledgerURL, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("us-east-1 -> demo/ledger: %s %q, want 404", resp.Status, resp.Header.Get("X-Strait-Reason"))
	}
	if resp, r := viaProxy(t, euw.Connect, profileURL, euHeader); resp.StatusCode != http.StatusOK || r.Cluster != "eu-central-1" {
		t.Errorf("marked request from eu-west-1: %s served by %q, want eu-central-1", resp.Status, r.Cluster)
	}
	// Gossip metadata carries every gateway's control-API address.
	for _, m := range d.Gateway("us-east-1").Status().Members {
		if m.Control == "" || m.Control != byName[m.Cluster].Control {
			t.Errorf("member %s: control %q, want %q", m.Node, m.Control, byName[m.Cluster].Control)
		}
	}
	ledger := byName["eu-west-1"].Services[1]
	if ledger.Service != "demo/ledger" || ledger.Labels["data-class"] != "pii-eu" {
		t.Errorf("eu-west-1 ledger: %+v", ledger)
	}

	// TLS passthrough: the tour's command, done with crypto/tls. The demo
	// service's own certificate is checked against the mesh CA file the
	// tour names, and the service saw the SNI the client sent.
	for _, c := range info.Clusters {
		if c.Passthrough == "" || !strings.Contains(tour.String(), c.Passthrough) {
			t.Errorf("%s: passthrough %q not in the tour", c.Name, c.Passthrough)
		}
	}
	sni := "outbound_.8080_._.ledger.demo.svc.cluster.local"
	for _, want := range []string{"openssl s_client -quiet -connect " + euc.Passthrough, "-servername " + sni,
		"-verify_hostname ledger.demo.svc.cluster.local -verify_return_error -CAfile " + info.MeshCA} {
		if !strings.Contains(tour.String(), want) {
			t.Errorf("tour lacks %q", want)
		}
	}
	caPEM, err := os.ReadFile(info.MeshCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", info.MeshCA)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d tls.Dialer
			d.Config = &tls.Config{ServerName: sni, InsecureSkipVerify: true,
				VerifyConnection: func(cs tls.ConnectionState) error {
					_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: "ledger.demo.svc.cluster.local", Roots: pool})
					return err
				}}
			return d.DialContext(ctx, "tcp", euc.Passthrough)
		}}}
	if r := getJSON(t, client, "https://ledger.demo.svc.cluster.local:8080/tls"); !r.TLS || r.SNI != sni || r.Region != "eu-west" || r.Path != "/tls" {
		t.Errorf("passthrough from eu-central-1 to demo/ledger: %+v", r)
	}
}

// TestDevTourNames: a federation whose gateways answer DNS (strait dev
// without --ephemeral) gets the tour's lines that resolve a name at
// eu-central-1's gateway and dial it.
func TestDevTourNames(t *testing.T) {
	info := lab.Info{Clusters: []lab.ClusterInfo{{Name: "eu-west-1"}, {Name: "eu-west-2"}, {Name: "eu-central-1", DNS: "127.0.3.1:15053"}, {Name: "us-east-1"}}}
	var tour strings.Builder
	lab.PrintTour(&tour, info, "strait")
	for _, want := range []string{
		"dig @127.0.3.1 -p 15053 ledger.demo.svc.clusterset.local\n",
		"curl -s --resolve ledger.demo.svc.clusterset.local:8080:$(dig @127.0.3.1 -p 15053 +short ledger.demo.svc.clusterset.local)",
	} {
		if !strings.Contains(tour.String(), want) {
			t.Errorf("tour lacks %q:\n%s", want, tour.String())
		}
	}
}

// TestDevTourKeepsHTTP2AndGRPCInTheEU runs the tour's HTTP/2 and gRPC
// lines: through eu-west-1's demo/profile import port (exported by
// eu-central-1 and us-east-1), every marked h2c stream and gRPC call on
// one connection is served in eu-central; unmarked ones are served too
// (by either exporter).
func TestDevTourKeepsHTTP2AndGRPCInTheEU(t *testing.T) {
	ctx, d, byName := startDev(t, lab.Spec{})
	var tour strings.Builder
	lab.PrintTour(&tour, d.Info(), "strait")
	imp := byName["eu-west-1"].Imports["demo/profile:8080"]
	for _, want := range []string{
		"curl -si --http2-prior-knowledge -H 'x-data-residency: eu' http://" + imp + "/headers",
		"strait probe grpc " + imp + " --header x-data-residency=eu",
	} {
		if !strings.Contains(tour.String(), want) {
			t.Errorf("tour lacks %q:\n%s", want, tour.String())
		}
	}
	exporters := []string{"eu-central", "us-east"}

	h2 := h2cClient()
	for i := range 40 {
		marked := i%2 == 0
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+imp+"/headers", nil)
		if err != nil {
			t.Fatal(err)
		}
		if marked {
			req.Header.Set("X-Data-Residency", "eu")
		}
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatalf("h2c stream %d (marked %v): %v", i, marked, err)
		}
		var r lab.Reply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		region := resp.Header.Get("X-Strait-Region")
		switch {
		case err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2:
			t.Fatalf("h2c stream %d (marked %v): HTTP/%d %s, %v", i, marked, resp.ProtoMajor, resp.Status, err)
		case region != r.Region || resp.Header.Get("X-Strait-Cluster") != r.Cluster:
			t.Errorf("h2c stream %d: X-Strait-Cluster %q, X-Strait-Region %q, but served by %s in %s", i, resp.Header.Get("X-Strait-Cluster"), region, r.Cluster, r.Region)
		case marked && (r.Region != "eu-central" || r.Headers.Get("X-Data-Residency") != "eu"):
			t.Errorf("marked h2c stream %d served by %s in %s with headers %v; want eu-central with the marker", i, r.Cluster, r.Region, r.Headers)
		case !slices.Contains(exporters, r.Region):
			t.Errorf("h2c stream %d served in %s, want one of %v", i, r.Region, exporters)
		}
	}

	conn, err := grpc.NewClient(imp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for i := range 40 {
		marked := i%2 == 0
		cctx := ctx
		if marked {
			cctx = metadata.AppendToOutgoingContext(ctx, "x-data-residency", "eu")
		}
		var hdr metadata.MD
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health check %d (marked %v): %v, %v", i, marked, resp, err)
		}
		region, cluster := hdr.Get("x-strait-region"), hdr.Get("x-strait-cluster")
		switch {
		case len(region) != 1 || len(cluster) != 1:
			t.Errorf("gRPC call %d: x-strait-region %v, x-strait-cluster %v; want one of each", i, region, cluster)
		case marked && (region[0] != "eu-central" || cluster[0] != "eu-central-1"):
			t.Errorf("marked gRPC call %d served by %s in %s, want eu-central-1", i, cluster[0], region[0])
		case !slices.Contains(exporters, region[0]):
			t.Errorf("gRPC call %d served in %s, want one of %v", i, region[0], exporters)
		}
	}
}
