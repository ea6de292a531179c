package state

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

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
