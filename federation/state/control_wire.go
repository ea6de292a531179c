package state

import (
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/straitmesh/strait/federation/state/statev1"
)

// Conversions between the control API's Go types and its messages
// (package statev1), one pair per type. They keep what the Go types
// promise callers: Records and Peers of a response are never nil, while an
// empty Versions or Known is nil, as the store answers them; a zero time
// travels as an unset timestamp.

func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromPB(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// convert maps a list; an empty one gives nil.
func convert[T, U any](in []T, f func(T) U) []U {
	if len(in) == 0 {
		return nil
	}
	out := make([]U, len(in))
	for i := range in {
		out[i] = f(in[i])
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// checkUTF8 refuses a message with a string field that is not UTF-8,
// which protobuf cannot carry.
func checkUTF8(m protoreflect.ProtoMessage) error {
	return checkUTF8Fields(m.ProtoReflect())
}

func checkUTF8Fields(m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		check := func(v protoreflect.Value) {
			switch {
			case fd.Kind() == protoreflect.StringKind && !utf8.ValidString(v.String()):
				err = fmt.Errorf("%w: %s %s is not UTF-8 text", ErrInvalid, m.Descriptor().Name(), fd.JSONName())
			case fd.Message() != nil:
				err = checkUTF8Fields(v.Message())
			}
		}
		if fd.IsList() {
			for i, l := 0, v.List(); i < l.Len() && err == nil; i++ {
				check(l.Get(i))
			}
		} else {
			check(v)
		}
		return err == nil
	})
	return err
}

func recordToPB(r Record) *statev1.Record {
	return &statev1.Record{Kind: r.Kind, Key: r.Key, Value: r.Value, Index: r.Index, Created: r.Created, Time: timeToPB(r.Time), By: r.By}
}

func recordFromPB(r *statev1.Record) Record {
	return Record{Kind: r.GetKind(), Key: r.GetKey(), Value: r.GetValue(), Index: r.GetIndex(), Created: r.GetCreated(), Time: timeFromPB(r.GetTime()), By: r.GetBy()}
}

func versionToPB(v Version) *statev1.Version {
	return &statev1.Version{Index: v.Index, Op: v.Op, Value: v.Value, Time: timeToPB(v.Time), By: v.By, RequestId: v.RequestID}
}

func versionFromPB(v *statev1.Version) Version {
	return Version{Index: v.GetIndex(), Op: v.GetOp(), Value: v.GetValue(), Time: timeFromPB(v.GetTime()), By: v.GetBy(), RequestID: v.GetRequestId()}
}

func serverInfoToPB(s ServerInfo) *statev1.ServerInfo {
	m := s.Member
	return &statev1.ServerInfo{
		Id:              s.ID,
		Member:          &statev1.Member{RaftAddr: m.RaftAddr, ControlAddr: m.ControlAddr, Cluster: m.Cluster, Region: m.Region, Voter: m.Voter},
		BootstrapExpect: int32(s.BootstrapExpect),
		HasState:        s.HasState,
	}
}

func serverInfoFromPB(s *statev1.ServerInfo) ServerInfo {
	m := s.GetMember()
	return ServerInfo{
		ID:              s.GetId(),
		Member:          Member{RaftAddr: m.GetRaftAddr(), ControlAddr: m.GetControlAddr(), Cluster: m.GetCluster(), Region: m.GetRegion(), Voter: m.GetVoter()},
		BootstrapExpect: int(s.GetBootstrapExpect()),
		HasState:        s.GetHasState(),
	}
}

func peerToPB(p Peer) *statev1.Peer {
	return &statev1.Peer{Id: p.ID, RaftAddr: p.RaftAddr, ControlAddr: p.ControlAddr, Cluster: p.Cluster, Region: p.Region, Voter: p.Voter, Leader: p.Leader}
}

func peerFromPB(p *statev1.Peer) Peer {
	return Peer{ID: p.GetId(), RaftAddr: p.GetRaftAddr(), ControlAddr: p.GetControlAddr(), Cluster: p.GetCluster(), Region: p.GetRegion(), Voter: p.GetVoter(), Leader: p.GetLeader()}
}

func writeRequestToPB(r *WriteRequest) *statev1.WriteRequest {
	return &statev1.WriteRequest{Op: r.Op, Kind: r.Kind, Key: r.Key, Value: r.Value, RequestId: r.RequestID, Forwarded: r.Forwarded, By: r.By}
}

func writeRequestFromPB(r *statev1.WriteRequest) *WriteRequest {
	return &WriteRequest{Op: r.GetOp(), Kind: r.GetKind(), Key: r.GetKey(), Value: r.GetValue(), RequestID: r.GetRequestId(), Forwarded: r.GetForwarded(), By: r.GetBy()}
}

func writeResponseToPB(r *WriteResponse) *statev1.WriteResponse {
	return &statev1.WriteResponse{Index: r.Index, Duplicate: r.Duplicate}
}

func writeResponseFromPB(r *statev1.WriteResponse) *WriteResponse {
	return &WriteResponse{Index: r.GetIndex(), Duplicate: r.GetDuplicate()}
}

func readRequestToPB(r *ReadRequest) *statev1.ReadRequest {
	return &statev1.ReadRequest{Kind: r.Kind, Key: r.Key, Consistent: r.Consistent, Forwarded: r.Forwarded}
}

func readRequestFromPB(r *statev1.ReadRequest) *ReadRequest {
	return &ReadRequest{Kind: r.GetKind(), Key: r.GetKey(), Consistent: r.GetConsistent(), Forwarded: r.GetForwarded()}
}

func readResponseToPB(r *ReadResponse) *statev1.ReadResponse {
	return &statev1.ReadResponse{Index: r.Index, Records: convert(r.Records, recordToPB), Node: r.Node, Stale: r.Stale}
}

func readResponseFromPB(r *statev1.ReadResponse) *ReadResponse {
	return &ReadResponse{Index: r.GetIndex(), Records: nonNil(convert(r.GetRecords(), recordFromPB)), Node: r.GetNode(), Stale: r.GetStale()}
}

func historyRequestToPB(r *HistoryRequest) *statev1.HistoryRequest {
	return &statev1.HistoryRequest{Kind: r.Kind, Key: r.Key}
}

func historyRequestFromPB(r *statev1.HistoryRequest) *HistoryRequest {
	return &HistoryRequest{Kind: r.GetKind(), Key: r.GetKey()}
}

func historyResponseToPB(r *HistoryResponse) *statev1.HistoryResponse {
	return &statev1.HistoryResponse{Index: r.Index, Versions: convert(r.Versions, versionToPB)}
}

func historyResponseFromPB(r *statev1.HistoryResponse) *HistoryResponse {
	return &HistoryResponse{Index: r.GetIndex(), Versions: convert(r.GetVersions(), versionFromPB)}
}

func joinRequestToPB(r *JoinRequest) *statev1.JoinRequest {
	return &statev1.JoinRequest{Server: serverInfoToPB(r.Server), Forwarded: r.Forwarded}
}

func joinRequestFromPB(r *statev1.JoinRequest) *JoinRequest {
	return &JoinRequest{Server: serverInfoFromPB(r.GetServer()), Forwarded: r.GetForwarded()}
}

func joinResponseToPB(r *JoinResponse) *statev1.JoinResponse {
	return &statev1.JoinResponse{Index: r.Index}
}

func joinResponseFromPB(r *statev1.JoinResponse) *JoinResponse {
	return &JoinResponse{Index: r.GetIndex()}
}

func discoverRequestToPB(r *DiscoverRequest) *statev1.DiscoverRequest {
	return &statev1.DiscoverRequest{Self: serverInfoToPB(r.Self)}
}

func discoverRequestFromPB(r *statev1.DiscoverRequest) *DiscoverRequest {
	return &DiscoverRequest{Self: serverInfoFromPB(r.GetSelf())}
}

func discoverResponseToPB(r *DiscoverResponse) *statev1.DiscoverResponse {
	return &statev1.DiscoverResponse{Self: serverInfoToPB(r.Self), Known: convert(r.Known, serverInfoToPB)}
}

func discoverResponseFromPB(r *statev1.DiscoverResponse) *DiscoverResponse {
	return &DiscoverResponse{Self: serverInfoFromPB(r.GetSelf()), Known: convert(r.GetKnown(), serverInfoFromPB)}
}

func peersRequestToPB(*PeersRequest) *statev1.PeersRequest { return &statev1.PeersRequest{} }

func peersResponseToPB(r *PeersResponse) *statev1.PeersResponse {
	return &statev1.PeersResponse{Leader: r.Leader, Peers: convert(r.Peers, peerToPB), Index: r.Index}
}

func peersResponseFromPB(r *statev1.PeersResponse) *PeersResponse {
	return &PeersResponse{Leader: r.GetLeader(), Peers: nonNil(convert(r.GetPeers(), peerFromPB)), Index: r.GetIndex()}
}

func removePeerRequestToPB(r *RemovePeerRequest) *statev1.RemovePeerRequest {
	return &statev1.RemovePeerRequest{Id: r.ID, Forwarded: r.Forwarded}
}

func removePeerRequestFromPB(r *statev1.RemovePeerRequest) *RemovePeerRequest {
	return &RemovePeerRequest{ID: r.GetId(), Forwarded: r.GetForwarded()}
}

func removePeerResponseToPB(r *RemovePeerResponse) *statev1.RemovePeerResponse {
	return &statev1.RemovePeerResponse{Index: r.Index}
}

func removePeerResponseFromPB(r *statev1.RemovePeerResponse) *RemovePeerResponse {
	return &RemovePeerResponse{Index: r.GetIndex()}
}

func snapshotRequestToPB(*SnapshotRequest) *statev1.SnapshotRequest {
	return &statev1.SnapshotRequest{}
}

func snapshotResponseToPB(r *SnapshotResponse) *statev1.SnapshotResponse {
	return &statev1.SnapshotResponse{Index: r.Index, Data: r.Data}
}

func snapshotResponseFromPB(r *statev1.SnapshotResponse) *SnapshotResponse {
	return &SnapshotResponse{Index: r.GetIndex(), Data: r.GetData()}
}

func restoreRequestToPB(r *RestoreRequest) *statev1.RestoreRequest {
	return &statev1.RestoreRequest{Data: r.Data, RequestId: r.RequestID}
}

func restoreRequestFromPB(r *statev1.RestoreRequest) *RestoreRequest {
	return &RestoreRequest{Data: r.GetData(), RequestID: r.GetRequestId()}
}

func restoreResponseToPB(r *RestoreResponse) *statev1.RestoreResponse {
	return &statev1.RestoreResponse{Index: r.Index, Records: int64(r.Records)}
}

func restoreResponseFromPB(r *statev1.RestoreResponse) *RestoreResponse {
	return &RestoreResponse{Index: r.GetIndex(), Records: int(r.GetRecords())}
}

func signRequestToPB(r *SignRequest) *statev1.SignCertificateRequest {
	return &statev1.SignCertificateRequest{Csr: r.CSR, Token: r.Token, LifetimeSeconds: int64(r.Lifetime / time.Second)}
}

func signRequestFromPB(r *statev1.SignCertificateRequest) *SignRequest {
	// Anything beyond a year is more than any CA gives (and would overflow).
	secs := min(max(r.GetLifetimeSeconds(), 0), 366*24*3600)
	return &SignRequest{CSR: r.GetCsr(), Token: r.GetToken(), Lifetime: time.Duration(secs) * time.Second}
}

func signResponseToPB(r *SignResponse) *statev1.SignCertificateResponse {
	return &statev1.SignCertificateResponse{Chain: r.Chain, Roots: r.Roots, Index: r.Index}
}

func signResponseFromPB(r *statev1.SignCertificateResponse) *SignResponse {
	return &SignResponse{Chain: r.GetChain(), Roots: r.GetRoots(), Index: r.GetIndex()}
}
