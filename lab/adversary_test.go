package lab_test

import (
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/lab"
)

// TestAdversaryWithAGatewayCertificate: in the dev federation, an
// adversary holds us-east-1's valid gateway certificate (stolen from a
// compromised gateway) and the gossip key, and turns them against the
// routing state through every gateway's control API, against the admin
// API, and against the data plane by answering for eu-central-1. Each
// attack is refused for its rule and written to the audit trail; the
// shipped policy stays in force, and requests marked for the EU stay
// there throughout (served in eu-central, or refused while it cannot be
// reached, never elsewhere).
func TestAdversaryWithAGatewayCertificate(t *testing.T) {
	auditDir := t.TempDir()
	ctx, d, info := startDev(t, lab.Spec{AuditDir: auditDir})
	cert, err := d.CA.IssueID(identity.ID{Role: identity.RoleGateway, Region: "us-east", Cluster: "us-east-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stolen, err := identity.NewBundle(cert, d.CA.Roots())
	if err != nil {
		t.Fatal(err)
	}
	_, before := d.Gateway("eu-west-1").Policy()
	permissive := "apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: default}\nspec: {default: allow}\n"
	attacks := []struct {
		name string
		rule string
		call func(c *state.ControlClient) error
	}{
		{"replace the residency policy", "operator-writes", func(c *state.ControlClient) error {
			_, err := c.Write(ctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindPolicy, Key: "default", Value: permissive})
			return err
		}},
		{"the same, claiming an operator forwarded it", "operator-writes", func(c *state.ControlClient) error {
			_, err := c.Write(ctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindPolicy, Key: "default", Value: permissive,
				Forwarded: true, By: "spiffe://strait.local/operator/dev"})
			return err
		}},
		{"delete the residency policy", "operator-writes", func(c *state.ControlClient) error {
			_, err := c.Write(ctx, &state.WriteRequest{Op: state.OpDelete, Kind: state.KindPolicy, Key: "default"})
			return err
		}},
		{"send demo/profile's failover to us-east first", "operator-writes", func(c *state.ControlClient) error {
			_, err := c.Write(ctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindFailover, Key: "demo/profile", Value: `{"priority":["us-east-1"]}`})
			return err
		}},
		{"join as a voter", "join-voter", func(c *state.ControlClient) error {
			_, err := c.Join(ctx, &state.JoinRequest{Server: state.ServerInfo{ID: "us-east-1", Member: state.Member{RaftAddr: "127.0.0.1:1",
				ControlAddr: "127.0.0.1:2", Cluster: "us-east-1", Region: "us-east", Voter: true}}})
			return err
		}},
		{"move eu-west-1's server to its own address", "join-identity", func(c *state.ControlClient) error {
			_, err := c.Join(ctx, &state.JoinRequest{Server: state.ServerInfo{ID: "eu-west-1", Member: state.Member{RaftAddr: "127.0.0.1:1",
				ControlAddr: "127.0.0.1:2", Cluster: "eu-west-1", Region: "eu-west", Voter: true}}})
			return err
		}},
		{"remove a voter", "operator-remove-peer", func(c *state.ControlClient) error {
			_, err := c.RemovePeer(ctx, &state.RemovePeerRequest{ID: "eu-central-1"})
			return err
		}},
	}
	for _, via := range []string{"eu-west-1", "eu-central-1", "us-east-1"} {
		c, err := state.DialControl(d.Gateway(via).ControlAddr(), stolen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, a := range attacks {
			if err := a.call(c); !errors.Is(err, state.ErrDenied) || !strings.Contains(err.Error(), "rule "+a.rule) {
				t.Errorf("via %s, %s: %v; want PermissionDenied by rule %s", via, a.name, err, a.rule)
			}
		}
	}
	if _, now := d.Gateway("eu-west-1").Policy(); now != before {
		t.Errorf("eu-west-1 enforces policy version %d, was %d", now, before)
	}
	recs := 0
	for _, name := range d.Clusters() {
		for _, r := range auditRecords(t, filepath.Join(auditDir, name+".jsonl")) {
			if r.Kind == "access" && r.Decision == "deny" && r.Caller == stolen.ID.String() {
				recs++
			}
		}
	}
	if recs < len(attacks) {
		t.Errorf("%d access records of the attacks, want at least %d", recs, len(attacks))
	}
	marked := func(when string, want int) {
		t.Helper()
		for range 10 {
			resp, r := viaProxy(t, info["eu-west-1"].Connect, profileURL, euHeader)
			if resp.StatusCode != want || want == http.StatusOK && r.Region != "eu-central" || r.Region == "us-east" {
				t.Fatalf("marked request %s: %s served in %q; want %d", when, resp.Status, r.Region, want)
			}
		}
	}
	marked("after the control-API attacks", http.StatusOK)

	// The admin API: the gossip key cannot be read, and a browser-style
	// cross-site request cannot rotate keys.
	admin := "http://" + d.Gateway("eu-west-1").AdminAddr()
	resp, err := http.Get(admin + "/v1/keys")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), d.GossipKey()) {
		t.Errorf("GET /v1/keys: %s, body holds the gossip key: %v", resp.Status, strings.Contains(string(body), d.GossipKey()))
	}
	resp, err = http.Post(admin+"/v1/keys/use", "text/plain", strings.NewReader(`{"key":"`+d.GossipKey()+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Errorf("cross-site key operation: %s, want refused", resp.Status)
	}

	// Answering for eu-central-1: the adversary's gateway, with its valid
	// us-east-1 certificate, takes every connection eu-west-1 opens to
	// eu-central-1's gateway. eu-west-1 finds us-east-1's identity where
	// it expected eu-central-1's and sends nothing: marked requests are
	// refused (their only allowed cluster is unreachable), never carried.
	im, err := d.StartImpostor("us-east", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := d.Hijack("eu-west-1", "eu-central-1", im.Addr()); err != nil {
		t.Fatal(err)
	}
	// Tunnels opened before the hijack stay where they are: a brief cut
	// ends them, and every new one goes to the adversary.
	link := d.Link("eu-west-1", "eu-central-1")
	if err := link.Partition(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := link.Heal(); err != nil {
		t.Fatal(err)
	}
	marked("with eu-central-1 impersonated", http.StatusServiceUnavailable)
	if im.Handshakes() == 0 {
		t.Error("eu-west-1 never reached the impostor: the attack was not tried")
	}
	if n := im.Carried(); n != 0 {
		t.Errorf("the impostor carried %d streams", n)
	}

	// Widening a claim: under default deny, a workload in eu-west-1 that
	// sends the marker (or names a namespace) would put its flow in
	// pii-eu, whose regions include its own; a claim only narrows, so it
	// cannot turn the refusal into an allow.
	deny := strings.Replace(string(examples.Residency), "default: allow", "default: deny", 1)
	if err := d.SetPolicy([]byte(deny)); err != nil {
		t.Fatal(err)
	}
	echo := "http://echo.demo.svc.clusterset.local:8080/"
	for _, h := range []http.Header{nil, euHeader, {"X-Strait-Source-Namespace": {"eu-customers"}}} {
		if resp, r := viaProxy(t, info["eu-west-1"].Connect, echo, h); resp.StatusCode != http.StatusForbidden {
			t.Errorf("under default deny, claims %v: %s served by %q; want 403", h, resp.Status, r.Cluster)
		}
	}
}
