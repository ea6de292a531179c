package state

import (
	"context"
	"errors"
	"time"
)

// Control is the routing-state control API. A Store implements it, and so
// does the gRPC client of another gateway's control port, so forwarding to
// the leader and the CLI speak the same interface.
type Control interface {
	Write(ctx context.Context, req *WriteRequest) (*WriteResponse, error)
	Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error)
	History(ctx context.Context, req *HistoryRequest) (*HistoryResponse, error)
	Join(ctx context.Context, req *JoinRequest) (*JoinResponse, error)
	Discover(ctx context.Context, req *DiscoverRequest) (*DiscoverResponse, error)
	Peers(ctx context.Context, req *PeersRequest) (*PeersResponse, error)
	RemovePeer(ctx context.Context, req *RemovePeerRequest) (*RemovePeerResponse, error)
	Snapshot(ctx context.Context, req *SnapshotRequest) (*SnapshotResponse, error)
	Restore(ctx context.Context, req *RestoreRequest) (*RestoreResponse, error)
	SignCertificate(ctx context.Context, req *SignRequest) (*SignResponse, error)
}

// WriteRequest puts or deletes one record.
type WriteRequest struct {
	Op    string `json:"op"` // put or delete
	Kind  string `json:"kind"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	// RequestID makes a retried write apply once: a write whose ID was
	// applied before answers with the index that applied it. Empty: the
	// receiving gateway assigns one (and retries internally with it).
	RequestID string `json:"requestId,omitempty"`
	// Forwarded is set by a gateway that forwards the write to the leader.
	Forwarded bool   `json:"forwarded,omitempty"`
	By        string `json:"by,omitempty"`

	records []Record // a restore
}

// WriteResponse says where the write was committed.
type WriteResponse struct {
	// Index is the Raft index that applied the write: its version.
	Index uint64 `json:"index"`
	// Duplicate is set when the request ID had been applied before.
	Duplicate bool `json:"duplicate,omitempty"`
}

// ReadRequest reads one record (Key set) or every record of Kind (all
// kinds when Kind is empty).
type ReadRequest struct {
	Kind string `json:"kind,omitempty"`
	Key  string `json:"key,omitempty"`
	// Consistent reads are answered by the leader after it confirms its
	// leadership, so they see every write acknowledged before they began.
	// Otherwise the receiving gateway answers from its own replica.
	Consistent bool `json:"consistent,omitempty"`
	Forwarded  bool `json:"forwarded,omitempty"`
}

// ReadResponse carries records and the index they reflect.
type ReadResponse struct {
	Index   uint64   `json:"index"`
	Records []Record `json:"records"`
	// Node is the gateway that answered; Stale is its staleness then.
	Node  string `json:"node"`
	Stale bool   `json:"stale,omitempty"`
}

// HistoryRequest asks for the past versions of one record.
type HistoryRequest struct {
	Kind string `json:"kind"`
	Key  string `json:"key"`
}

// HistoryResponse lists versions oldest first (at most 16 are kept).
type HistoryResponse struct {
	Index    uint64    `json:"index"`
	Versions []Version `json:"versions"`
}

// ServerInfo describes a Raft server to its peers.
type ServerInfo struct {
	ID              string `json:"id"`
	Member          Member `json:"member"`
	BootstrapExpect int    `json:"bootstrapExpect,omitempty"`
	HasState        bool   `json:"hasState"`
}

// JoinRequest asks the leader to add (or update) a server.
type JoinRequest struct {
	Server    ServerInfo `json:"server"`
	Forwarded bool       `json:"forwarded,omitempty"`
}

// JoinResponse says at which index the server's member record stands.
type JoinResponse struct {
	Index uint64 `json:"index"`
}

// DiscoverRequest introduces a server to a peer before bootstrap.
type DiscoverRequest struct {
	Self ServerInfo `json:"self"`
}

// DiscoverResponse answers with the peer and every server it has seen.
type DiscoverResponse struct {
	Self  ServerInfo   `json:"self"`
	Known []ServerInfo `json:"known"`
}

// PeersRequest asks for the Raft configuration.
type PeersRequest struct{}

// Peer is one server of the Raft configuration.
type Peer struct {
	ID          string `json:"id"`
	RaftAddr    string `json:"raftAddr"`
	ControlAddr string `json:"controlAddr,omitempty"`
	Cluster     string `json:"cluster,omitempty"`
	Region      string `json:"region,omitempty"`
	Voter       bool   `json:"voter"`
	Leader      bool   `json:"leader"`
}

// PeersResponse lists the servers as the answering gateway knows them.
type PeersResponse struct {
	Leader string `json:"leader"`
	Peers  []Peer `json:"peers"`
	Index  uint64 `json:"index"`
}

// RemovePeerRequest removes a server (a dead voter) from the configuration.
type RemovePeerRequest struct {
	ID        string `json:"id"`
	Forwarded bool   `json:"forwarded,omitempty"`
}

// RemovePeerResponse carries the index of the configuration change.
type RemovePeerResponse struct {
	Index uint64 `json:"index"`
}

// SnapshotRequest asks for the answering gateway's state as a snapshot.
type SnapshotRequest struct{}

// SnapshotResponse carries a snapshot in the format of DecodeSnapshot.
type SnapshotResponse struct {
	Index uint64 `json:"index"`
	Data  []byte `json:"data"`
}

// RestoreRequest replaces every client-written record with a snapshot's.
type RestoreRequest struct {
	Data      []byte `json:"data"`
	RequestID string `json:"requestId,omitempty"`
}

// RestoreResponse carries the index that applied the restore.
type RestoreResponse struct {
	Index   uint64 `json:"index"`
	Records int    `json:"records"`
}

// Errors callers branch on.
var (
	// ErrNoLeader means no leader could be reached in time (the quorum is
	// unreachable or an election is under way). Retrying later may work.
	ErrNoLeader = errors.New("no routing-state leader reachable")
	// ErrNotLeader is returned to a forwarding gateway by one that is no
	// longer the leader.
	ErrNotLeader = errors.New("not the routing-state leader")
	// ErrDenied is a change the caller's verified identity may not make.
	ErrDenied = errors.New("permission denied")
	// ErrDisabled means the gateway runs without routing state.
	ErrDisabled = errors.New("routing state is not enabled on this gateway")
)

type callerKey struct{}

// WithCaller returns ctx carrying the identity of the party calling the
// control API; writes record it as their author.
func WithCaller(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

func callerOf(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// Health is a gateway's view of its routing state's freshness.
type Health struct {
	Node     string `json:"node"`
	Role     string `json:"role"` // leader, follower, candidate, shutdown
	Voter    bool   `json:"voter"`
	Leader   string `json:"leader,omitempty"`
	Index    uint64 `json:"index"`   // index of the view the gateway routes on
	Applied  uint64 `json:"applied"` // last index applied from the log
	Commit   uint64 `json:"commit"`
	FromDisk bool   `json:"fromDisk,omitempty"`
	// Stale is set when the gateway has had no contact with a leader for
	// longer than state.staleAfter; StaleSince is the last contact (or when
	// the state on disk was written, if none since start).
	Stale      bool      `json:"stale"`
	StaleSince time.Time `json:"staleSince,omitzero"`
	// Records counts records by kind.
	Records map[string]int `json:"records"`
}
