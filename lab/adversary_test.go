package lab_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/lab"
)

// TestAdversaryWithAGatewayCertificate: in the dev federation, an
// adversary holds us-east-1's valid gateway certificate (stolen from a
// compromised gateway) and turns it against the routing state through
// every gateway's control API. Each attack is refused for its rule and
// written to the audit trail; the shipped policy stays in force, and
// requests marked for the EU keep staying there throughout.
func TestAdversaryWithAGatewayCertificate(t *testing.T) {
	auditDir := t.TempDir()
	ctx, d, info := startDev(t, lab.Spec{AuditDir: auditDir})
	cert, err := d.CA.IssueID(identity.ID{Role: identity.RoleGateway, Region: "us-east", Cluster: "us-east-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stolen, err := identity.NewBundle(cert, d.CA.Pool())
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
	// Marked requests still stay in the EU.
	for range 10 {
		resp, r := viaProxy(t, info["eu-west-1"].Connect, profileURL, euHeader)
		if resp.StatusCode != http.StatusOK || r.Region != "eu-central" {
			t.Fatalf("marked request after the attacks: %s served in %q", resp.Status, r.Region)
		}
	}
}
