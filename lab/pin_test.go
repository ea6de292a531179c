package lab_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/lab"
	"github.com/straitmesh/strait/sovereignty"
)

// TestPinnedPeers: the path from eu-west-2 to eu-west-1's gateway is
// hijacked to an impostor holding a valid certificate of the federation's
// CA for us-east-1. The catalog still lists eu-west-1 there, and residency
// allows eu-west-1 for the pii-eu ledger, so eu-west-2 tries it first. It
// completes the handshake, finds us-east-1's identity where it expected
// eu-west-1's, and closes: no flow is ever carried to the impostor (so
// none leaves the EU), every flow fails over to the honest allowed
// cluster eu-central-1, and the mismatch is counted and audited. Pooled
// tunnels and connections of their own alike.
func TestPinnedPeers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noTunnels bool
	}{{"tunnels", false}, {"a connection per stream", true}} {
		t.Run(tc.name, func(t *testing.T) {
			pii := map[string]string{"data-class": "pii-eu"}
			west := startDemo(t, "demo/ledger", "eu-west-1", "eu-west", pii)
			central := startDemo(t, "demo/ledger", "eu-central-1", "eu-central", pii)
			auditDir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := lab.Start(ctx, lab.Spec{
				Clusters: []lab.ClusterSpec{
					{Name: "eu-west-2", Region: "eu-west"},
					{Name: "eu-west-1", Region: "eu-west", Services: []discovery.Service{west}},
					{Name: "eu-central-1", Region: "eu-central", Services: []discovery.Service{central}},
				},
				Policy:    examples.Residency,
				AuditDir:  auditDir,
				NoTunnels: tc.noTunnels,
				Timeouts:  gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
				Health:    gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			im, err := l.StartImpostor("us-east", "us-east-1")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(im.Close)
			if err := l.Hijack("eu-west-2", "eu-west-1", im.Addr()); err != nil {
				t.Fatal(err)
			}
			src, victim := l.Gateway("eu-west-2"), l.Gateway("eu-west-1")

			for i := range 5 {
				resp, r := viaConnect(t, src.ConnectAddr(), "ledger.demo.svc.clusterset.local:8080")
				if resp.StatusCode != http.StatusOK || r.Cluster != "eu-central-1" {
					t.Fatalf("flow %d: %s served by %q in %q; want eu-central-1", i, resp.Status, r.Cluster, r.Region)
				}
			}
			if im.Handshakes() == 0 {
				t.Fatal("eu-west-2 never reached the impostor: the test proves nothing")
			}
			if n := im.Carried(); n != 0 {
				t.Errorf("the impostor was given %d streams", n)
			}
			if n := inboundFrom(t, victim, "demo/ledger:8080", "eu-west-2"); n != 0 {
				t.Errorf("eu-west-1 served %v flows it could not have been reached for", n)
			}
			if n := metricValue(t, src, "strait_gateway_peer_identity_mismatch_total", map[string]string{"destination_cluster": "eu-west-1"}); n < 1 {
				t.Errorf("mismatches counted %v, want >= 1", n)
			}
			want := "gateway at " + victim.DataAddr() + " presented spiffe://strait.local/gateway/region/us-east/cluster/us-east-1, expected cluster eu-west-1 in region eu-west"
			rec, ok := findRecord(auditRecords(t, filepath.Join(auditDir, "eu-west-2.jsonl")), func(r sovereignty.Record) bool {
				return r.Kind == sovereignty.KindIdentity
			})
			if !ok {
				t.Fatal("no audit record of the mismatch")
			}
			if rec.Decision != sovereignty.DecisionDeny || rec.Direction != "outbound" || rec.Reason != want ||
				len(rec.Candidates) != 1 || rec.Candidates[0].Cluster != "eu-west-1" || rec.Candidates[0].Region != "eu-west" {
				t.Errorf("audit record %+v\nwant reason %q", rec, want)
			}
		})
	}
}
