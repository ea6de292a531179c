package lab_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/lab"
)

const labPolicy = "apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: eu-data}\nspec: {default: allow}\n"

// TestRoutingStateAcrossGateways: three voters in three regions and a
// non-voter share one routing state; a policy written through the
// non-voter reaches every gateway at the same index, shows in status, and
// a gateway cut off from the quorum keeps it and says it may be stale.
func TestRoutingStateAcrossGateways(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{State: true, StateStaleAfter: time.Second, Clusters: []lab.ClusterSpec{
		{Name: "a", Region: "eu-west", Voter: true},
		{Name: "b", Region: "eu-central", Voter: true},
		{Name: "c", Region: "us-east", Voter: true},
		{Name: "d", Region: "eu-west"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	c := opsControl(t, l, "d")
	w, err := c.Write(ctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindPolicy, Key: "eu-data", Value: labPolicy})
	if err != nil {
		t.Fatalf("apply policy through the non-voter: %v", err)
	}
	if err := l.WaitState(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range l.Clusters() {
		r, ok := l.Gateway(name).RoutingState().Get(state.KindPolicy, "eu-data")
		if !ok || r.Index != w.Index {
			t.Errorf("%s: policy %+v (%v), want index %d", name, r, ok, w.Index)
		}
	}
	st, err := admin.FetchStatus(ctx, l.Gateway("c").AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	if st.State == nil || len(st.State.Policies) != 1 || st.State.Policies[0].Index != w.Index || st.State.Leader == "" || st.State.Stale {
		b, _ := json.Marshal(st.State)
		t.Fatalf("status state %s", b)
	}

	// Cut c off from the quorum: it keeps routing on the policy and says
	// that the state may be stale, without failing readiness.
	for _, name := range []string{"a", "b"} {
		if err := l.StopGateway(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	ready := func() (int, string) {
		resp, err := http.Get("http://" + l.Gateway("c").AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := ready()
		if code == http.StatusOK && strings.Contains(body, "warning: routing state may be stale since") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %q: want 200 with a stale warning", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, ok := l.Gateway("c").RoutingState().Get(state.KindPolicy, "eu-data"); !ok || r.Index != w.Index {
		t.Fatalf("without quorum the policy is %+v (%v)", r, ok)
	}
	st, err = admin.FetchStatus(ctx, l.Gateway("c").AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	st.WriteTable(&table)
	if !st.State.Stale || st.State.StaleSince.IsZero() || !strings.Contains(table.String(), "WARNING: routing state may be stale since") {
		t.Fatalf("status while cut off: %+v\n%s", st.State.Health, table.String())
	}
}
