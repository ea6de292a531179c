package state

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/straitmesh/strait/federation/state/statev1"
	"github.com/straitmesh/strait/identity"
)

// grpcurlVersion is the grpcurl the operator's commands in
// docs/architecture.md were checked with.
const grpcurlVersion = "v1.9.3"

// TestControlGrpcurl lists, describes and calls the control API with the
// grpcurl binary, as an operator would: through server reflection, with a
// certificate of the federation.
func TestControlGrpcurl(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "install", "github.com/fullstorydev/grpcurl/cmd/grpcurl@"+grpcurlVersion)
	build.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build grpcurl %s (the Go module proxy must be reachable): %v\n%s", grpcurlVersion, err, out)
	}
	certs := t.TempDir()
	f := newTestFed(t)
	if err := f.ca.WriteIDFiles(certs, identity.ID{Role: identity.RoleOperator, Name: "grpcurl"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	n := f.add(true, 1)
	f.waitMembers()

	// Gateway certificates name a SPIFFE ID, not a host, so grpcurl cannot
	// check the server's name: -insecure. The server still checks ours.
	tlsFlags := []string{"-insecure", "-cert", filepath.Join(certs, "cert.pem"), "-key", filepath.Join(certs, "key.pem")}
	grpcurl := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "grpcurl"), append([]string{"-max-time", "10"}, args...)...)
		out, err := cmd.CombinedOutput()
		t.Logf("grpcurl %s\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := grpcurl(append(tlsFlags, args...)...)
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	list := strings.Fields(run(n.ctlAddr, "list"))
	for _, want := range []string{"strait.state.v1.Control", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(list, want) {
			t.Errorf("grpcurl list: %q, want %s among them", list, want)
		}
	}
	desc := run(n.ctlAddr, "describe", "strait.state.v1.Control")
	for _, rpc := range []string{"Write", "Read", "History", "Join", "Discover", "Peers", "RemovePeer", "Snapshot", "Restore", "SignCertificate"} {
		if !strings.Contains(desc, "rpc "+rpc+" ( .strait.state.v1."+rpc+"Request ) returns ( .strait.state.v1."+rpc+"Response )") {
			t.Errorf("grpcurl describe lacks %s:\n%s", rpc, desc)
		}
	}
	if out := run("-d", `{"service":"strait.state.v1.Control"}`, n.ctlAddr, "grpc.health.v1.Health/Check"); !strings.Contains(out, `"status": "SERVING"`) {
		t.Errorf("health check: %s", out)
	}

	const value = `{"priority":["eu-west-1"]}`
	var wr statev1.WriteResponse
	unmarshal(t, run("-d", `{"op":"put","kind":"failover","key":"demo/ledger","value":"{\"priority\":[\"eu-west-1\"]}"}`, n.ctlAddr, "strait.state.v1.Control/Write"), &wr)
	var rr statev1.ReadResponse
	unmarshal(t, run("-d", `{"kind":"failover","key":"demo/ledger","consistent":true}`, n.ctlAddr, "strait.state.v1.Control/Read"), &rr)
	if len(rr.Records) != 1 {
		t.Fatalf("read after write: %v", &rr)
	}
	r := rr.Records[0]
	if wr.Index == 0 || r.Index != wr.Index || r.Value != value || r.By != "spiffe://strait.local/operator/grpcurl" || r.Time == nil {
		t.Errorf("read %v after write at %d: want the value at that index, by grpcurl's certificate, with its time", r, wr.Index)
	}
	if rr.Node != n.name {
		t.Errorf("read answered by %q, want %q", rr.Node, n.name)
	}
	// Bad input is INVALID_ARGUMENT, as for the Go client.
	if out, err := grpcurl(append(tlsFlags, "-d", `{"op":"put","kind":"failover","key":"ledger","value":"{}"}`, n.ctlAddr, "strait.state.v1.Control/Write")...); err == nil || !strings.Contains(out, "InvalidArgument") {
		t.Errorf("a bad key: %v\n%s", err, out)
	}

	// Without a certificate of the federation nothing is answered.
	if out, err := grpcurl("-insecure", "-connect-timeout", "2", n.ctlAddr, "list"); err == nil {
		t.Errorf("grpcurl without a client certificate listed services:\n%s", out)
	}
}

func unmarshal(t *testing.T, out string, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("grpcurl answered %q: %v", out, err)
	}
}

// TestControlHealth checks the standard health service: SERVING while the
// server runs; on a graceful stop a watcher is told NOT_SERVING and its
// stream ends, so the stop does not wait for it.
func TestControlHealth(t *testing.T) {
	f := newTestFed(t)
	n := f.add(true, 1)
	hc := healthpb.NewHealthClient(f.client(n).cc)
	ctx := ctx10(t)
	for _, svc := range []string{"", "strait.state.v1.Control"} {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("check %q: %v, %v; want SERVING", svc, r, err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "strait.state.v1.Other"}); status.Code(err) != codes.NotFound {
		t.Fatalf("check of an unknown service: %v; want NotFound", err)
	}
	watch := func(svc string, want healthpb.HealthCheckResponse_ServingStatus) healthpb.Health_WatchClient {
		t.Helper()
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := w.Recv(); err != nil || r.GetStatus() != want {
			t.Fatalf("watch %q: %v, %v; want %v", svc, r, err, want)
		}
		return w
	}
	w := watch("strait.state.v1.Control", healthpb.HealthCheckResponse_SERVING)
	unknown := watch("strait.state.v1.Other", healthpb.HealthCheckResponse_SERVICE_UNKNOWN)

	stopped := make(chan struct{})
	go func() {
		n.ctl.GracefulStop(context.Background())
		close(stopped)
	}()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch during stop: %v, %v; want NOT_SERVING", r, err)
	}
	for _, s := range []healthpb.Health_WatchClient{w, unknown} {
		if r, err := s.Recv(); err == nil {
			t.Fatalf("watch after NOT_SERVING: %v; want the stream to end", r)
		}
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("GracefulStop still waits after its health watches ended")
	}
}

// TestControlRefusesNonUTF8 checks that a string protobuf cannot carry is
// refused as invalid by the client, before anything reaches the store.
func TestControlRefusesNonUTF8(t *testing.T) {
	f := newTestFed(t)
	n := f.add(true, 1)
	f.waitMembers()
	c := f.client(n)
	ctx := ctx10(t)
	before := n.store.raft.LastIndex()
	for _, req := range []*WriteRequest{
		{Op: OpPut, Kind: KindPolicy, Key: "p", Value: testPolicy + "# \xff\n"},
		{Op: OpPut, Kind: KindPolicy, Key: "p\xff", Value: testPolicy},
	} {
		if _, err := c.Write(ctx, req); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not UTF-8") {
			t.Errorf("write %q %q: %v; want ErrInvalid: not UTF-8", req.Key, req.Value, err)
		}
	}
	if _, err := c.Join(ctx, &JoinRequest{Server: ServerInfo{ID: "n9", Member: Member{RaftAddr: "127.0.0.1:1\xfe"}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("join with a non-UTF-8 address: %v; want ErrInvalid", err)
	}
	if after := n.store.raft.LastIndex(); after != before {
		t.Fatalf("log grew from %d to %d", before, after)
	}
}

// TestControlWireRoundTrip checks that every field of the control API's Go
// types survives the trip through its message: each sample sets every
// field, so a field added to a Go type but not to its conversion fails.
func TestControlWireRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	info := ServerInfo{ID: "n1", Member: Member{RaftAddr: "10.0.0.1:8300", ControlAddr: "10.0.0.1:15012", Cluster: "c1", Region: "r1", Voter: true}, BootstrapExpect: 3, HasState: true}
	rec := Record{Kind: KindPolicy, Key: "eu", Value: "v", Index: 7, Created: 5, Time: at, By: "spiffe://strait.local/region/r/cluster/c"}
	ver := Version{Index: 7, Op: OpDelete, Value: "v", Time: at, By: "spiffe://x", RequestID: "r1"}
	peer := Peer{ID: "n1", RaftAddr: "a:1", ControlAddr: "a:2", Cluster: "c", Region: "r", Voter: true, Leader: true}
	for _, tc := range []struct {
		name string
		in   any
		trip func(any) any
	}{
		{"WriteRequest", &WriteRequest{Op: OpPut, Kind: KindFailover, Key: "a/b", Value: "{}", RequestID: "r", Forwarded: true, By: "spiffe://x"},
			func(v any) any { return writeRequestFromPB(writeRequestToPB(v.(*WriteRequest))) }},
		{"WriteResponse", &WriteResponse{Index: 9, Duplicate: true}, func(v any) any { return writeResponseFromPB(writeResponseToPB(v.(*WriteResponse))) }},
		{"ReadRequest", &ReadRequest{Kind: KindPolicy, Key: "eu", Consistent: true, Forwarded: true}, func(v any) any { return readRequestFromPB(readRequestToPB(v.(*ReadRequest))) }},
		{"ReadResponse", &ReadResponse{Index: 9, Records: []Record{rec, rec}, Node: "n1", Stale: true}, func(v any) any { return readResponseFromPB(readResponseToPB(v.(*ReadResponse))) }},
		{"HistoryRequest", &HistoryRequest{Kind: KindPolicy, Key: "eu"}, func(v any) any { return historyRequestFromPB(historyRequestToPB(v.(*HistoryRequest))) }},
		{"HistoryResponse", &HistoryResponse{Index: 9, Versions: []Version{ver}}, func(v any) any { return historyResponseFromPB(historyResponseToPB(v.(*HistoryResponse))) }},
		{"JoinRequest", &JoinRequest{Server: info, Forwarded: true}, func(v any) any { return joinRequestFromPB(joinRequestToPB(v.(*JoinRequest))) }},
		{"JoinResponse", &JoinResponse{Index: 9}, func(v any) any { return joinResponseFromPB(joinResponseToPB(v.(*JoinResponse))) }},
		{"DiscoverRequest", &DiscoverRequest{Self: info}, func(v any) any { return discoverRequestFromPB(discoverRequestToPB(v.(*DiscoverRequest))) }},
		{"DiscoverResponse", &DiscoverResponse{Self: info, Known: []ServerInfo{info}}, func(v any) any { return discoverResponseFromPB(discoverResponseToPB(v.(*DiscoverResponse))) }},
		{"PeersResponse", &PeersResponse{Leader: "n1", Peers: []Peer{peer}, Index: 9}, func(v any) any { return peersResponseFromPB(peersResponseToPB(v.(*PeersResponse))) }},
		{"RemovePeerRequest", &RemovePeerRequest{ID: "n2", Forwarded: true}, func(v any) any { return removePeerRequestFromPB(removePeerRequestToPB(v.(*RemovePeerRequest))) }},
		{"RemovePeerResponse", &RemovePeerResponse{Index: 9}, func(v any) any { return removePeerResponseFromPB(removePeerResponseToPB(v.(*RemovePeerResponse))) }},
		{"SnapshotResponse", &SnapshotResponse{Index: 9, Data: []byte("STRAITSS")}, func(v any) any { return snapshotResponseFromPB(snapshotResponseToPB(v.(*SnapshotResponse))) }},
		{"RestoreRequest", &RestoreRequest{Data: []byte("STRAITSS"), RequestID: "r"}, func(v any) any { return restoreRequestFromPB(restoreRequestToPB(v.(*RestoreRequest))) }},
		{"RestoreResponse", &RestoreResponse{Index: 9, Records: 4}, func(v any) any { return restoreResponseFromPB(restoreResponseToPB(v.(*RestoreResponse))) }},
		{"SignRequest", &SignRequest{CSR: []byte{0x30}, Token: "sjt1.x", Lifetime: 90 * time.Second}, func(v any) any { return signRequestFromPB(signRequestToPB(v.(*SignRequest))) }},
		{"SignResponse", &SignResponse{Chain: "c", Roots: "r", Index: 9}, func(v any) any { return signResponseFromPB(signResponseToPB(v.(*SignResponse))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f := zeroField(reflect.ValueOf(tc.in).Elem()); f != "" {
				t.Fatalf("the sample leaves %s unset", f)
			}
			if got := tc.trip(tc.in); !reflect.DeepEqual(got, tc.in) {
				t.Fatalf("round trip gave %+v, want %+v", got, tc.in)
			}
		})
	}
	// Empty lists come back as the store answers them.
	if r := readResponseFromPB(readResponseToPB(&ReadResponse{Records: []Record{}})); r.Records == nil {
		t.Error("an empty ReadResponse.Records came back nil")
	}
	if r := peersResponseFromPB(peersResponseToPB(&PeersResponse{Peers: []Peer{}})); r.Peers == nil {
		t.Error("an empty PeersResponse.Peers came back nil")
	}
	if r := readResponseFromPB(readResponseToPB(&ReadResponse{Records: []Record{{Kind: KindPolicy}}})); !r.Records[0].Time.IsZero() {
		t.Errorf("a zero time came back as %v", r.Records[0].Time)
	}
}

// zeroField names the first exported field of v (recursively through
// structs and the first element of slices) that is its zero value.
func zeroField(v reflect.Value) string {
	for i := 0; i < v.NumField(); i++ {
		sf, fv := v.Type().Field(i), v.Field(i)
		if !sf.IsExported() {
			continue
		}
		if fv.IsZero() || (fv.Kind() == reflect.Slice && fv.Len() == 0) {
			return sf.Name
		}
		switch {
		case fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Time{}):
			if f := zeroField(fv); f != "" {
				return sf.Name + "." + f
			}
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			if f := zeroField(fv.Index(0)); f != "" {
				return sf.Name + "[0]." + f
			}
		}
	}
	return ""
}
