package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/straitmesh/strait/identity"
)

// The control API is gRPC over mTLS with JSON messages: a hand-written
// service description and codec, no generated code. Every caller must hold
// a certificate of the federation's trust domain; its SPIFFE ID is
// recorded as the author of the writes it makes.
const (
	controlService = "strait.state.v1.Control"
	maxControlMsg  = 64 << 20
)

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return "json" }

func unary[Req, Resp any](name string, call func(Control, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	full := "/" + controlService + "/" + name
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		req := new(Req)
		if err := dec(req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decode %s request: %v", name, err)
		}
		h := func(ctx context.Context, r any) (any, error) {
			resp, err := call(srv.(Control), withPeerCaller(ctx), r.(*Req))
			if err != nil {
				return nil, toStatus(err)
			}
			return resp, nil
		}
		if ic == nil {
			return h(ctx, req)
		}
		return ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, h)
	}}
}

var controlDesc = grpc.ServiceDesc{
	ServiceName: controlService,
	HandlerType: (*Control)(nil),
	Methods: []grpc.MethodDesc{
		unary("Write", Control.Write),
		unary("Read", Control.Read),
		unary("History", Control.History),
		unary("Join", Control.Join),
		unary("Discover", Control.Discover),
		unary("Peers", Control.Peers),
		unary("RemovePeer", Control.RemovePeer),
		unary("Snapshot", Control.Snapshot),
		unary("Restore", Control.Restore),
	},
	Metadata: "strait/state/v1/control.json",
}

func withPeerCaller(ctx context.Context) context.Context {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ctx
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ctx
	}
	id, err := identity.PeerID(ti.State)
	if err != nil {
		return ctx
	}
	return WithCaller(ctx, id.String())
}

// ControlServer serves the control API of a Store.
type ControlServer struct {
	srv *grpc.Server
}

// NewControlServer returns a gRPC server for c that accepts only mTLS
// clients of id's trust domain.
func NewControlServer(c Control, id *identity.Bundle) *ControlServer {
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(id.ServerConfig())),
		grpc.ForceServerCodec(jsonCodec{}),
		grpc.MaxRecvMsgSize(maxControlMsg), grpc.MaxSendMsgSize(maxControlMsg),
	)
	srv.RegisterService(&controlDesc, c)
	return &ControlServer{srv: srv}
}

// Serve accepts on ln until Stop.
func (s *ControlServer) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Stop closes the listener and every connection and waits for handlers.
func (s *ControlServer) Stop() { s.srv.Stop() }

// GracefulStop stops accepting and waits for pending calls or ctx.
func (s *ControlServer) GracefulStop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.srv.Stop()
		<-done
	}
}

// toStatus maps errors to gRPC codes the client maps back.
func toStatus(err error) error {
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrBadSnapshot):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNotLeader):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrDisabled):
		return status.Error(codes.Unimplemented, err.Error())
	case retryable(err):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// remoteError is an error answered by another gateway.
type remoteError struct {
	code codes.Code
	msg  string
}

func (e *remoteError) Error() string     { return e.msg }
func (e *remoteError) Unavailable() bool { return e.code == codes.Unavailable }
func (e *remoteError) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return e.code == codes.InvalidArgument && !strings.Contains(e.msg, ErrBadSnapshot.Error())
	case ErrBadSnapshot:
		return e.code == codes.InvalidArgument && strings.Contains(e.msg, ErrBadSnapshot.Error())
	case ErrNotLeader:
		return e.code == codes.FailedPrecondition
	case ErrNoLeader:
		return e.code == codes.Unavailable
	case ErrDisabled:
		return e.code == codes.Unimplemented
	case context.DeadlineExceeded:
		return e.code == codes.DeadlineExceeded
	}
	return false
}

func fromStatus(addr, method string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("control %s at %s: %w", method, addr, err)
	}
	if st.Code() == codes.Unavailable && !strings.Contains(st.Message(), "routing-state") {
		// A transport failure (connection refused, handshake): say where.
		return &remoteError{code: codes.Unavailable, msg: fmt.Sprintf("control %s at %s: %s", method, addr, st.Message())}
	}
	return &remoteError{code: st.Code(), msg: st.Message()}
}

// ControlClient calls another gateway's control API.
type ControlClient struct {
	addr string
	cc   *grpc.ClientConn
}

var _ Control = (*ControlClient)(nil)

// DialControl returns a client for the control API at addr, presenting
// id's certificate. It connects lazily.
func DialControl(addr string, id *identity.Bundle) (*ControlClient, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(id.ClientConfig("control.strait"))),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(jsonCodec{}), grpc.MaxCallRecvMsgSize(maxControlMsg), grpc.MaxCallSendMsgSize(maxControlMsg)),
	)
	if err != nil {
		return nil, fmt.Errorf("control client for %s: %w", addr, err)
	}
	return &ControlClient{addr: addr, cc: cc}, nil
}

// Close closes the connection.
func (c *ControlClient) Close() error { return c.cc.Close() }

func invoke[Resp any](ctx context.Context, c *ControlClient, method string, req any) (*Resp, error) {
	resp := new(Resp)
	if err := c.cc.Invoke(ctx, "/"+controlService+"/"+method, req, resp); err != nil {
		return nil, fromStatus(c.addr, method, err)
	}
	return resp, nil
}

func (c *ControlClient) Write(ctx context.Context, req *WriteRequest) (*WriteResponse, error) {
	return invoke[WriteResponse](ctx, c, "Write", req)
}
func (c *ControlClient) Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error) {
	return invoke[ReadResponse](ctx, c, "Read", req)
}
func (c *ControlClient) History(ctx context.Context, req *HistoryRequest) (*HistoryResponse, error) {
	return invoke[HistoryResponse](ctx, c, "History", req)
}
func (c *ControlClient) Join(ctx context.Context, req *JoinRequest) (*JoinResponse, error) {
	return invoke[JoinResponse](ctx, c, "Join", req)
}
func (c *ControlClient) Discover(ctx context.Context, req *DiscoverRequest) (*DiscoverResponse, error) {
	return invoke[DiscoverResponse](ctx, c, "Discover", req)
}
func (c *ControlClient) Peers(ctx context.Context, req *PeersRequest) (*PeersResponse, error) {
	return invoke[PeersResponse](ctx, c, "Peers", req)
}
func (c *ControlClient) RemovePeer(ctx context.Context, req *RemovePeerRequest) (*RemovePeerResponse, error) {
	return invoke[RemovePeerResponse](ctx, c, "RemovePeer", req)
}
func (c *ControlClient) Snapshot(ctx context.Context, req *SnapshotRequest) (*SnapshotResponse, error) {
	return invoke[SnapshotResponse](ctx, c, "Snapshot", req)
}
func (c *ControlClient) Restore(ctx context.Context, req *RestoreRequest) (*RestoreResponse, error) {
	return invoke[RestoreResponse](ctx, c, "Restore", req)
}
