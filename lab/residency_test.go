package lab_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/lab"
	"github.com/straitmesh/strait/sovereignty"
)

// viaProxy sends one absolute-form GET through the CONNECT port at proxy
// with extra request headers, as `curl -x proxy -H ...` does.
func viaProxy(t *testing.T, proxy, rawURL string, header http.Header) (*http.Response, lab.Reply) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return proxyDo(t, proxy, req)
}

// connectWithHeaders opens a CONNECT tunnel carrying extra headers on the
// CONNECT request itself (curl --proxy-header) and returns the answer.
func connectWithHeaders(t *testing.T, proxy, authority string, header http.Header) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var hs strings.Builder
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&hs, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", authority, authority, hs.String())
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	return resp
}

// connectAndGet opens a CONNECT tunnel carrying outer on the CONNECT
// request and, when it is answered 200, sends one GET with inner inside
// it; it returns both responses, bodies read (inner nil when the CONNECT
// was refused).
func connectAndGet(t *testing.T, proxy, authority string, outer, inner http.Header) (*http.Response, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := &http.Request{Method: http.MethodConnect, Host: authority, URL: &url.URL{Opaque: authority}, Header: outer}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	get, _ := http.NewRequest(http.MethodGet, "http://"+authority+"/", nil)
	maps.Copy(get.Header, inner)
	if err := get.Write(c); err != nil {
		t.Fatal(err)
	}
	in, err := http.ReadResponse(br, get)
	if err != nil {
		t.Fatalf("GET inside the tunnel to %s: %v", authority, err)
	}
	body, _ := io.ReadAll(in.Body)
	in.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp, in
}

// importGet sends one GET through a per-import port of a service that
// speaks HTTP and returns the response, its body read.
func importGet(t *testing.T, addr string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET through import port %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// auditRecords reads a gateway's audit trail.
func auditRecords(t *testing.T, file string) []sovereignty.Record {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []sovereignty.Record
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r sovereignty.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %q: %v", file, line, err)
		}
		out = append(out, r)
	}
	return out
}

func findRecord(recs []sovereignty.Record, match func(sovereignty.Record) bool) (sovereignty.Record, bool) {
	for _, r := range recs {
		if match(r) {
			return r, true
		}
	}
	return sovereignty.Record{}, false
}

const (
	ledgerURL  = "http://ledger.demo.svc.clusterset.local:8080/"
	profileURL = "http://profile.demo.svc.clusterset.local:8080/"
)

var euHeader = http.Header{"X-Data-Residency": {"eu"}}

// TestResidencyInDevFederation runs the shipped policy on the `strait dev`
// topology: refusals, header classification, and failover that must not
// cross regions when the allowed cluster is cut off or stopped.
func TestResidencyInDevFederation(t *testing.T) {
	auditDir := t.TempDir()
	ctx, d, info := startDev(t, lab.Spec{AuditDir: auditDir,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Health:   gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond}})
	euw1, euc1, use1 := info["eu-west-1"], info["eu-central-1"], info["us-east-1"]

	t.Run("ledger is invisible from us-east-1 and refused on every entry", func(t *testing.T) {
		// catalog: region-only keeps demo/ledger's entry out of us-east:
		// that gateway does not know the service exists.
		if d.Gateway("us-east-1").Catalog().Snapshot().Known("demo", "ledger") {
			t.Fatal("us-east-1 learned a region-only service")
		}
		before := inboundFrom(t, d.Gateway("eu-west-1"), "demo/ledger:8080", "us-east-1") + inboundFrom(t, d.Gateway("eu-west-2"), "demo/ledger:8080", "us-east-1")
		resp := connectWithHeaders(t, use1.Connect, "ledger.demo.svc.clusterset.local:8080", nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(resp.Header.Get("X-Strait-Reason"), "no cluster exports demo/ledger:8080") {
			t.Fatalf("CONNECT status %s %q, want 404", resp.Status, resp.Header.Get("X-Strait-Reason"))
		}
		if resp, _ := viaProxy(t, use1.Connect, ledgerURL, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("absolute-form status %s, want 404", resp.Status)
		}
		if resp := importGet(t, use1.Imports["demo/ledger:8080"], nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("per-import port: %s, want 404", resp.Status)
		}
		after := inboundFrom(t, d.Gateway("eu-west-1"), "demo/ledger:8080", "us-east-1") + inboundFrom(t, d.Gateway("eu-west-2"), "demo/ledger:8080", "us-east-1")
		if after != before {
			t.Errorf("eu-west gateways accepted %v streams from us-east-1", after-before)
		}
	})

	t.Run("marked flow from us-east-1 is denied, counted and audited", func(t *testing.T) {
		resp := connectWithHeaders(t, use1.Connect, "profile.demo.svc.clusterset.local:8080", euHeader)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("CONNECT status %s, want 403", resp.Status)
		}
		reason := resp.Header.Get("X-Strait-Reason")
		for _, want := range []string{"residency:", "class pii-eu", "rule class:pii-eu", "source region us-east"} {
			if !strings.Contains(reason, want) {
				t.Errorf("X-Strait-Reason %q lacks %q", reason, want)
			}
		}
		if n := metricValue(t, d.Gateway("us-east-1"), "strait_residency_decisions_total", map[string]string{"decision": "deny", "class": "pii-eu", "rule": "class:pii-eu"}); n < 1 {
			t.Errorf("deny decisions counted %v, want >= 1", n)
		}
		rec, ok := findRecord(auditRecords(t, filepath.Join(auditDir, "us-east-1.jsonl")), func(r sovereignty.Record) bool {
			return r.Decision == "deny" && r.Flow != nil && r.Flow.Service == "demo/profile"
		})
		if !ok {
			t.Fatal("no audit record for the refused flow")
		}
		_, inForce := d.Gateway("us-east-1").Policy()
		if rec.Status != 403 || rec.Rule != "class:pii-eu" || rec.Class != "pii-eu" || rec.Policy.Version != inForce || rec.Policy.Name != "default" ||
			rec.Flow.SourceRegion != "us-east" || strings.Join(rec.Flow.Classes, ",") != "pii-eu" {
			t.Errorf("audit record %+v", rec)
		}
	})

	t.Run("ledger from eu-central-1 goes to eu-west", func(t *testing.T) {
		resp, r := viaConnect(t, euc1.Connect, "ledger.demo.svc.clusterset.local:8080")
		if resp.StatusCode != http.StatusOK || r.Region != "eu-west" {
			t.Fatalf("%s, served in %q", resp.Status, r.Region)
		}
		imp := getJSON(t, &http.Client{Timeout: 10 * time.Second}, "http://"+euc1.Imports["demo/ledger:8080"]+"/")
		if imp.Region != "eu-west" {
			t.Errorf("import port served in %s", imp.Region)
		}
	})

	t.Run("header-classified request from eu-west-1 stays in eu", func(t *testing.T) {
		for range 3 {
			resp, r := viaProxy(t, euw1.Connect, profileURL, euHeader)
			if resp.StatusCode != http.StatusOK || r.Cluster != "eu-central-1" {
				t.Fatalf("%s, served by %q; want eu-central-1", resp.Status, r.Cluster)
			}
		}
		// The marker on the CONNECT itself (curl --proxy-header) marks every
		// request inside the tunnel; so does one on the request.
		for _, h := range []struct{ outer, inner http.Header }{{euHeader, nil}, {nil, euHeader}} {
			for range 3 {
				resp, inner := connectAndGet(t, euw1.Connect, "profile.demo.svc.clusterset.local:8080", h.outer, h.inner)
				if resp.StatusCode != http.StatusOK || inner == nil || inner.StatusCode != http.StatusOK || inner.Header.Get("X-Strait-Cluster") != "eu-central-1" {
					t.Fatalf("CONNECT (marker on the CONNECT %v): %s, request inside: %+v", h.outer != nil, resp.Status, inner)
				}
			}
		}
		// Each request inside a tunnel is routed on its own: marked requests
		// stay in eu while unmarked ones may go anywhere.
		if resp := importGet(t, euw1.Imports["demo/profile:8080"], euHeader); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Strait-Cluster") != "eu-central-1" {
			t.Errorf("import port, marked: %s via %q", resp.Status, resp.Header.Get("X-Strait-Cluster"))
		}
	})

	t.Run("the marker cannot be dodged by case, spacing or lists", func(t *testing.T) {
		// From us-east-1 every spelling of eu is pii-eu, refused at the source.
		for _, v := range []string{"EU", " eu\t", "eu, EU", "eu,"} {
			resp, r := viaProxy(t, use1.Connect, profileURL, http.Header{"X-Data-Residency": {v}})
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("x-data-residency %q from us-east-1: %s served by %q; want 403", v, resp.Status, r.Cluster)
			}
		}
		// From eu-west-1 it stays in the EU.
		if resp, r := viaProxy(t, euw1.Connect, profileURL, http.Header{"X-Data-Residency": {"Eu"}}); resp.StatusCode != http.StatusOK || r.Region != "eu-central" {
			t.Errorf("x-data-residency Eu from eu-west-1: %s served in %q; want eu-central", resp.Status, r.Region)
		}
		// Two values, in one list or two fields, and an unknown value are
		// the client's mistake: 400, audited, never forwarded.
		for _, h := range []http.Header{{"X-Data-Residency": {"eu, us"}}, {"X-Data-Residency": {"eu", "us"}}, {"X-Data-Residency": {"europe"}}} {
			resp, r := viaProxy(t, use1.Connect, profileURL, h)
			if resp.StatusCode != http.StatusBadRequest || r.Cluster != "" || !strings.Contains(resp.Header.Get("X-Strait-Reason"), "X-Data-Residency") {
				t.Errorf("%v from us-east-1: %s %q served by %q; want 400 naming the header", h, resp.Status, resp.Header.Get("X-Strait-Reason"), r.Cluster)
			}
		}
		if _, ok := findRecord(auditRecords(t, filepath.Join(auditDir, "us-east-1.jsonl")), func(r sovereignty.Record) bool {
			return r.Decision == "deny" && r.Status == 400 && r.Rule == "header:X-Data-Residency"
		}); !ok {
			t.Error("no audit record of a refused header")
		}
	})

	t.Run("cut link: unmarked traffic fails over abroad, marked traffic is refused", func(t *testing.T) {
		link := d.Link("eu-west-1", "eu-central-1")
		if err := link.Partition(); err != nil {
			t.Fatal(err)
		}
		defer link.Heal()
		// The failover path exists: without the header the flow crosses to us-east-1.
		resp, r := viaProxy(t, euw1.Connect, profileURL, nil)
		if resp.StatusCode != http.StatusOK || r.Cluster != "us-east-1" {
			t.Fatalf("unmarked: %s served by %q; want failover to us-east-1", resp.Status, r.Cluster)
		}
		before := inboundFrom(t, d.Gateway("us-east-1"), "demo/profile:8080", "eu-west-1")
		resp, r = viaProxy(t, euw1.Connect, profileURL, euHeader)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("marked: %s served by %q; want 503", resp.Status, r.Cluster)
		}
		reason := resp.Header.Get("X-Strait-Reason")
		for _, want := range []string{"residency:", "eu-central-1", "class pii-eu", "us-east-1 is in region us-east"} {
			if !strings.Contains(reason, want) {
				t.Errorf("reason %q lacks %q", reason, want)
			}
		}
		if got := inboundFrom(t, d.Gateway("us-east-1"), "demo/profile:8080", "eu-west-1"); got != before {
			t.Errorf("us-east-1 accepted a marked stream from eu-west-1")
		}
	})

	t.Run("policy update swaps on every gateway; an invalid one changes nothing", func(t *testing.T) {
		_, v1 := d.Gateway("eu-central-1").Policy()
		westOnly := strings.Replace(string(examples.Residency), "allowedRegions: [eu]", "allowedRegions: [eu-west]", 1)
		if err := d.SetPolicy([]byte(westOnly)); err != nil {
			t.Fatal(err)
		}
		// The policy travels through the routing state: every gateway
		// enforces the same version, the Raft index that wrote it.
		_, v2 := d.Gateway("eu-central-1").Policy()
		if v2 <= v1 {
			t.Fatalf("policy version %d after an update from %d", v2, v1)
		}
		for _, c := range []string{"eu-west-1", "eu-west-2", "eu-central-1", "us-east-1"} {
			if _, v := d.Gateway(c).Policy(); v != v2 {
				t.Errorf("%s runs policy version %d, want %d", c, v, v2)
			}
		}
		// Refused at once, and the entry is then withdrawn from eu-central.
		if resp, _ := viaProxy(t, euc1.Connect, ledgerURL, nil); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
			t.Fatalf("eu-central-1 -> ledger under west-only: %s, want 403 or 404", resp.Status)
		}
		waitFor(t, func() bool { return !d.Gateway("eu-central-1").Catalog().Snapshot().Known("demo", "ledger") })
		// An invalid policy is refused before it reaches the log.
		if err := d.SetPolicy([]byte(strings.Replace(westOnly, "[eu-west]", "[eu-north]", 1))); err == nil || !strings.Contains(err.Error(), `unknown region or group "eu-north"`) {
			t.Fatalf("invalid policy: %v", err)
		}
		if _, v := d.Gateway("eu-central-1").Policy(); v != v2 {
			t.Errorf("version %d after a refused update, want %d", v, v2)
		}
		if resp, _ := viaProxy(t, euc1.Connect, ledgerURL, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("after a refused update: %s, want 404 (the last good policy keeps ledger out of eu-central)", resp.Status)
		}
		waitFor(t, func() bool {
			_, applied := findRecord(auditRecords(t, filepath.Join(auditDir, "eu-central-1.jsonl")), func(r sovereignty.Record) bool {
				return r.Decision == "applied" && r.Policy.Version == v2 && r.Policy.Previous == v1
			})
			return applied
		})
		if err := d.SetPolicy(examples.Residency); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stopped allowed cluster: 503, never us-east-1", func(t *testing.T) {
		if err := d.StopGateway(ctx, "eu-central-1"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			for _, c := range d.Gateway("eu-west-1").Catalog().Snapshot().Clusters {
				if c.Cluster == "eu-central-1" {
					return !c.Reachable
				}
			}
			return false
		})
		before := inboundFrom(t, d.Gateway("us-east-1"), "demo/profile:8080", "eu-west-1")
		resp, r := viaProxy(t, euw1.Connect, profileURL, euHeader)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("marked: %s served by %q; want 503", resp.Status, r.Cluster)
		}
		if reason := resp.Header.Get("X-Strait-Reason"); !strings.Contains(reason, "allowed cluster eu-central-1 is not reachable") || !strings.Contains(reason, "rule class:pii-eu") {
			t.Errorf("reason %q", reason)
		}
		if resp := connectWithHeaders(t, euw1.Connect, "profile.demo.svc.clusterset.local:8080", euHeader); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("CONNECT marked: %s, want 503", resp.Status)
		}
		if got := inboundFrom(t, d.Gateway("us-east-1"), "demo/profile:8080", "eu-west-1"); got != before {
			t.Errorf("us-east-1 accepted a marked stream")
		}
		// Unmarked traffic still fails over, so the refusal above is residency's doing.
		if resp, r := viaProxy(t, euw1.Connect, profileURL, nil); resp.StatusCode != http.StatusOK || r.Cluster != "us-east-1" {
			t.Errorf("unmarked: %s served by %q; want us-east-1", resp.Status, r.Cluster)
		}
		rec, ok := findRecord(auditRecords(t, filepath.Join(auditDir, "eu-west-1.jsonl")), func(r sovereignty.Record) bool {
			return r.Decision == "deny" && r.Status == 503 && r.Flow != nil && r.Flow.Service == "demo/profile"
		})
		if !ok || rec.Flow.Headers["X-Data-Residency"] != "eu" || rec.Flow.Protocol != "http" || rec.Rule != "class:pii-eu" {
			t.Errorf("eu-west-1 audit: %+v (found %v)", rec, ok)
		}
		if _, ok := findRecord(auditRecords(t, filepath.Join(auditDir, "eu-west-1.jsonl")), func(r sovereignty.Record) bool {
			return r.Decision == "filtered" && r.Flow != nil && r.Flow.Service == "demo/profile" && len(r.Candidates) == 2
		}); !ok {
			t.Error("no filtered record for us-east-1 removed from the marked flow")
		}
	})
}

// TestInboundEnforcesWhatOutboundMissed: a gateway without the policy
// sends a pii-eu flow from us-east; the receiving gateway refuses it from
// the certificate's region, and the client gets 403.
func TestInboundEnforcesWhatOutboundMissed(t *testing.T) {
	ledger := startDemo(t, "demo/ledger", "eu", "eu-west", map[string]string{"data-class": "pii-eu"})
	auditDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	allowAll := []byte("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: open}\nspec: {default: allow}\n")
	// Without catalog scoping, so that the misconfigured gateway learns
	// of the service and tries.
	unscoped := []byte(strings.Replace(string(examples.Residency), "catalog: region-only", "", 1))
	l, err := lab.Start(ctx, lab.Spec{Policy: unscoped, AuditDir: auditDir,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Clusters: []lab.ClusterSpec{
			{Name: "us", Region: "us-east", Policy: allowAll},
			{Name: "euc", Region: "eu-central"},
			{Name: "eu", Region: "eu-west", Services: []discovery.Service{ledger}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	resp := connectWithHeaders(t, l.Gateway("us").ConnectAddr(), "ledger.demo.svc.clusterset.local:8080", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %s, want 403", resp.Status)
	}
	if reason := resp.Header.Get("X-Strait-Reason"); !strings.Contains(reason, "refused it at its gateway") || !strings.Contains(reason, "residency: class pii-eu") {
		t.Errorf("reason %q", reason)
	}
	if n := metricValue(t, l.Gateway("eu"), "strait_gateway_connections_total", map[string]string{"direction": "inbound", "source_cluster": "us", "destination_cluster": "eu", "result": "refused"}); n != 1 {
		t.Errorf("eu refused %v inbound streams from us, want 1", n)
	}
	rec, ok := findRecord(auditRecords(t, filepath.Join(auditDir, "eu.jsonl")), func(r sovereignty.Record) bool { return r.Direction == "inbound" })
	if !ok || rec.Decision != "deny" || rec.Rule != "class:pii-eu" || rec.Flow.SourceCluster != "us" || rec.Flow.SourceRegion != "us-east" {
		t.Errorf("inbound audit %+v (found %v)", rec, ok)
	}
	// Allowed from eu-central, through the same inbound check.
	if resp, r := viaConnect(t, l.Gateway("euc").ConnectAddr(), "ledger.demo.svc.clusterset.local:8080"); resp.StatusCode != http.StatusOK || r.Cluster != "eu" {
		t.Errorf("from euc: %s %+v", resp.Status, r)
	}
}

// TestInboundFactsOnlyNarrow speaks to an inbound gateway directly with a
// federation certificate and hand-written flow facts.
func TestInboundFactsOnlyNarrow(t *testing.T) {
	ledger := startDemo(t, "demo/ledger", "eu", "eu-west", map[string]string{"data-class": "pii-eu"})
	profile := startDemo(t, "demo/profile", "eu", "eu-west", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{Policy: examples.Residency, Clusters: []lab.ClusterSpec{
		{Name: "eu", Region: "eu-west", Services: []discovery.Service{ledger, profile}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	data := l.Gateway("eu").DataAddr()

	stream := func(t *testing.T, region, cluster, service, facts string) string {
		t.Helper()
		cert, err := l.CA.Issue(region, cluster, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", data, &tls.Config{
			Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"strait-flow/1"},
			ServerName: wire.Target{Namespace: "demo", Name: service, Port: 8080}.SNI(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if c.ConnectionState().NegotiatedProtocol != "strait-flow/1" {
			t.Fatalf("ALPN %q", c.ConnectionState().NegotiatedProtocol)
		}
		io.WriteString(c, facts+"\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	for _, tc := range []struct {
		name, region, cluster, service, facts string
		want                                  string // prefix of the answer
	}{
		{"allowed source, no claims", "eu-central", "x", "ledger", `{}`, "OK"},
		{"source region comes from the certificate, claims cannot relax it", "us-east", "x", "ledger", `{"classes":[],"restricted":false}`,
			"ERR residency: class pii-eu allows regions [eu-central eu-west]; the source region us-east"},
		{"claimed regions exclude this cluster", "eu-central", "x", "ledger", `{"classes":["pii-eu"],"regions":["eu-central"],"restricted":true}`,
			"ERR residency: the outbound gateway restricted the flow"},
		{"claimed class adds a restriction to an unlabelled service", "us-east", "x", "profile", `{"classes":["pii-eu"]}`,
			"ERR residency: class pii-eu"},
		{"claimed header classifies", "us-east", "x", "profile", `{"headers":{"x-data-residency":["eu"]}}`,
			"ERR residency: class pii-eu"},
		{"claimed source namespace classifies", "us-east", "x", "profile", `{"namespace":"eu-customers"}`,
			"ERR residency: class pii-eu"},
		{"unclassified flow from anywhere", "us-east", "x", "profile", `{}`, "OK"},
		{"malformed facts are refused", "eu-central", "x", "ledger", `{"classes":"pii-eu"}`, "ERR bad flow facts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stream(t, tc.region, tc.cluster, tc.service, tc.facts); !strings.HasPrefix(got, tc.want) {
				t.Errorf("answer %q, want %q...", got, tc.want)
			}
		})
	}
}

// TestLedgerRefusedEverywhereWhenEUWestFails: with both eu-west clusters
// stopped, demo/ledger is served nowhere: eu-central-1 refuses with 503
// (its allowed clusters are down) and never tries us-east-1, which does
// not know the service at all; each refusal in eu-central is audited.
func TestLedgerRefusedEverywhereWhenEUWestFails(t *testing.T) {
	auditDir := t.TempDir()
	ctx, d, info := startDev(t, lab.Spec{AuditDir: auditDir,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second}})
	for _, c := range []string{"eu-west-1", "eu-west-2"} {
		if err := d.StopGateway(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		s := d.Gateway("eu-central-1").Catalog().Snapshot()
		return !s.ClusterReachable("eu-west-1") && !s.ClusterReachable("eu-west-2")
	})
	resp, r := viaProxy(t, info["eu-central-1"].Connect, ledgerURL, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || r.Cluster != "" {
		t.Fatalf("eu-central-1 -> ledger with eu-west down: %s served by %q, want 503", resp.Status, r.Cluster)
	}
	if reason := resp.Header.Get("X-Strait-Reason"); !strings.Contains(reason, "eu-west-1") || !strings.Contains(reason, "eu-west-2") {
		t.Errorf("reason %q does not name the allowed clusters that are down", reason)
	}
	if resp := importGet(t, info["eu-central-1"].Imports["demo/ledger:8080"], nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("eu-central-1's import port: %s, want 503", resp.Status)
	}
	if resp, _ := viaProxy(t, info["us-east-1"].Connect, ledgerURL, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("us-east-1 -> ledger: %s, want 404", resp.Status)
	}
	recs := auditRecords(t, filepath.Join(auditDir, "eu-central-1.jsonl"))
	for _, entry := range []string{"http", "import"} {
		if _, ok := findRecord(recs, func(r sovereignty.Record) bool {
			return r.Decision == "deny" && r.Status == 503 && r.Flow != nil && r.Flow.Service == "demo/ledger" && r.Entry == entry
		}); !ok {
			t.Errorf("no audit record of the 503 refusal on the %s entry; have %d records", entry, len(recs))
		}
	}
}
