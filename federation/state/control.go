package state

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/straitmesh/strait/federation/state/statev1"
	"github.com/straitmesh/strait/identity"
)

// The control API is gRPC over mTLS with protobuf messages, defined in
// proto/strait/state/v1/control.proto and generated into package statev1.
// Every caller must hold a certificate of the federation's trust domain;
// its SPIFFE ID is recorded as the author of the writes it makes. The TLS
// listener also takes clients without a certificate, for one method only:
// SignCertificate, where a join token authorizes a new gateway's first
// certificate (ca.go). Every other method, the health and reflection
// services included, answers such a client Unauthenticated
// (requireCertificate, TestControlNeedsACertificate).
//
//	service                                   what
//	strait.state.v1.Control                   the methods of Control
//	grpc.health.v1.Health                     SERVING for "" and for
//	                                          strait.state.v1.Control while
//	                                          the server runs, NOT_SERVING
//	                                          once it stops
//	grpc.reflection.v1.ServerReflection       descriptors of the services,
//	grpc.reflection.v1alpha.ServerReflection  for tools such as grpcurl
//
// Go code speaks Control and its Go types; the messages of statev1 exist
// only between ControlClient and ControlServer (control_wire.go converts).
// Errors travel as status codes (toStatus) and are mapped back to the
// sentinel errors on the client (remoteError).
const maxControlMsg = 64 << 20

// What one client may hold of a control server. gRPC's own defaults
// allow unlimited streams per connection, a 16 MiB header list and two
// minutes for a connection's handshake.
const (
	// maxControlRecv bounds a request: a Restore carries a whole state
	// (MaxCommandSize), every other request is far smaller.
	maxControlRecv = MaxCommandSize + 1<<20
	// maxControlStreams bounds the calls one connection has open at once
	// (a gateway forwards every write on one connection; more wait in
	// the client).
	maxControlStreams = 128
	// maxControlHeaders bounds a call's metadata.
	maxControlHeaders = 64 << 10
	// controlConnectTimeout bounds a new connection's TLS handshake and
	// HTTP/2 preface. The gateway's listener also ends TLS handshakes at
	// limits.handshakeTimeout.
	controlConnectTimeout = 10 * time.Second
)

// controlServerOptions are the control server's limits and keepalive
// rules: idle connections are closed after five minutes (clients dial
// again on their next call), a dead client is noticed within 40s, and a
// client may ping at most every 10s.
func controlServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxControlRecv), grpc.MaxSendMsgSize(maxControlMsg),
		grpc.MaxConcurrentStreams(maxControlStreams),
		grpc.MaxHeaderListSize(maxControlHeaders),
		grpc.ConnectionTimeout(controlConnectTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute, Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// establishingCreds tells a connection in a connection budget (the
// gateway's listener, internal/connlimit) that its TLS handshake
// finished, so that it stops counting as a handshake of its source.
type establishingCreds struct {
	credentials.TransportCredentials
}

func (c establishingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err == nil {
		if e, ok := raw.(established); ok {
			e.Established()
		}
	}
	return conn, info, err
}

func (c establishingCreds) Clone() credentials.TransportCredentials {
	return establishingCreds{c.TransportCredentials.Clone()}
}

// controlService serves Control over the generated service interface.
// It embeds UnsafeControlServer rather than UnimplementedControlServer so
// that an RPC added to the .proto fails the build until it is served.
type controlService struct {
	statev1.UnsafeControlServer
	c     Control
	authz *authorizer
	// id reads callers' certificates as this gateway's trust does (a
	// DNS identity under a declared suffix).
	id *identity.Bundle
}

var _ statev1.ControlServer = controlService{}

// serve calls a Control method with the caller's identity from its
// certificate and maps its error to a status. A method that changes the
// state (check non-nil) is authorized against the verified caller first
// and is never forwarded: on a follower it answers FailedPrecondition
// with the leader's control address in the "strait-leader" trailer, and
// the caller asks the leader itself, which authorizes the caller by its
// own certificate.
func serve[Req, Resp, PResp any](ctx context.Context, s controlService, rpc string, call func(context.Context, *Req) (*Resp, error), req *Req,
	check func(identity.ID, *Req) error, out func(*Resp) PResp) (PResp, error) {
	var zero PResp
	ctx, caller, ok := withPeerCaller(ctx, s.id)
	if !ok {
		return zero, errNoCertificate(rpc)
	}
	if check != nil {
		if err := s.authz.ownDomain(caller); err != nil {
			return zero, s.authz.deny(rpc, caller, err)
		}
		if err := check(caller, req); err != nil {
			return zero, s.authz.deny(rpc, caller, err)
		}
		// Checked: the identity is the author of the change.
		if addr, here := s.authz.leader(); !here {
			if addr == "" {
				return zero, toStatus(ErrNoLeader)
			}
			_ = grpc.SetTrailer(ctx, metadata.Pairs(leaderTrailer, addr))
			return zero, toStatus(fmt.Errorf("%w: ask the leader at %s", ErrNotLeader, addr))
		}
	}
	resp, err := call(ctx, req)
	if err != nil {
		return zero, toStatus(err)
	}
	if resp == nil {
		return zero, status.Error(codes.Internal, "no response")
	}
	return out(resp), nil
}

func orUnknown(s string) string {
	if s == "" {
		return "not known yet"
	}
	return s
}

// leaderTrailer carries the leader's control address with a
// FailedPrecondition answer.
const leaderTrailer = "strait-leader"

func (s controlService) Write(ctx context.Context, req *statev1.WriteRequest) (*statev1.WriteResponse, error) {
	r := writeRequestFromPB(req)
	// The author is the verified caller, never what it says; a request is
	// never forwarded on from here.
	r.Forwarded, r.By = true, ""
	return serve(ctx, s, "Write", s.c.Write, r, mayWrite, writeResponseToPB)
}

func (s controlService) Read(ctx context.Context, req *statev1.ReadRequest) (*statev1.ReadResponse, error) {
	return serve(ctx, s, "Read", s.c.Read, readRequestFromPB(req), nil, readResponseToPB)
}

func (s controlService) History(ctx context.Context, req *statev1.HistoryRequest) (*statev1.HistoryResponse, error) {
	return serve(ctx, s, "History", s.c.History, historyRequestFromPB(req), nil, historyResponseToPB)
}

func (s controlService) Join(ctx context.Context, req *statev1.JoinRequest) (*statev1.JoinResponse, error) {
	r := joinRequestFromPB(req)
	r.Forwarded = true
	return serve(ctx, s, "Join", s.c.Join, r, s.authz.mayJoin, joinResponseToPB)
}

func (s controlService) Discover(ctx context.Context, req *statev1.DiscoverRequest) (*statev1.DiscoverResponse, error) {
	return serve(ctx, s, "Discover", s.c.Discover, discoverRequestFromPB(req), nil, discoverResponseToPB)
}

func (s controlService) Peers(ctx context.Context, req *statev1.PeersRequest) (*statev1.PeersResponse, error) {
	return serve(ctx, s, "Peers", s.c.Peers, &PeersRequest{}, nil, peersResponseToPB)
}

func (s controlService) RemovePeer(ctx context.Context, req *statev1.RemovePeerRequest) (*statev1.RemovePeerResponse, error) {
	r := removePeerRequestFromPB(req)
	r.Forwarded = true
	return serve(ctx, s, "RemovePeer", s.c.RemovePeer, r, mayRemovePeer, removePeerResponseToPB)
}

func (s controlService) Snapshot(ctx context.Context, req *statev1.SnapshotRequest) (*statev1.SnapshotResponse, error) {
	return serve(ctx, s, "Snapshot", s.c.Snapshot, &SnapshotRequest{}, nil, snapshotResponseToPB)
}

func (s controlService) Restore(ctx context.Context, req *statev1.RestoreRequest) (*statev1.RestoreResponse, error) {
	return serve(ctx, s, "Restore", s.c.Restore, restoreRequestFromPB(req), mayRestore, restoreResponseToPB)
}

// SignCertificate is the one method a caller without a certificate may
// call. The leader decides (ca.go, maySign): the context carries the
// caller's verified identity when it has one, nothing otherwise.
func (s controlService) SignCertificate(ctx context.Context, req *statev1.SignCertificateRequest) (*statev1.SignCertificateResponse, error) {
	const rpc = "SignCertificate"
	ctx, caller, _ := withPeerCaller(ctx, s.id)
	if addr, here := s.authz.leader(); !here {
		if addr == "" {
			return nil, toStatus(ErrNoLeader)
		}
		_ = grpc.SetTrailer(ctx, metadata.Pairs(leaderTrailer, addr))
		return nil, toStatus(fmt.Errorf("%w: ask the leader at %s", ErrNotLeader, addr))
	}
	resp, err := s.c.SignCertificate(ctx, signRequestFromPB(req))
	if err != nil {
		var ar *authRule
		if errors.As(err, &ar) {
			return nil, s.authz.deny(rpc, caller, err)
		}
		return nil, toStatus(err)
	}
	return signResponseToPB(resp), nil
}

// signMethod is the full name of the one method served without a
// client certificate.
var signMethod = "/" + statev1.Control_ServiceDesc.ServiceName + "/SignCertificate"

// ErrNoCertificate is the answer to a caller without a certificate on
// any method but SignCertificate.
var ErrNoCertificate = errors.New("the control API needs a certificate of the federation")

func errNoCertificate(method string) error {
	return status.Error(codes.Unauthenticated, fmt.Sprintf("%v (%s): only SignCertificate takes a join token instead", ErrNoCertificate, method))
}

// hasPeerCertificate reports whether the caller presented a certificate
// (the TLS handshake verified it).
func hasPeerCertificate(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(ti.State.PeerCertificates) > 0
}

// requireCertificate refuses every call of a client without a
// certificate, on every service of the server, except SignCertificate.
func requireCertificate() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if info.FullMethod != signMethod && !hasPeerCertificate(ctx) {
				return nil, errNoCertificate(info.FullMethod)
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if !hasPeerCertificate(ss.Context()) {
				return errNoCertificate(info.FullMethod)
			}
			return h(srv, ss)
		}),
	}
}

// withPeerCaller returns ctx carrying the verified identity of the
// caller's certificate (the author of its writes), and that identity.
func withPeerCaller(ctx context.Context, b *identity.Bundle) (context.Context, identity.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ctx, identity.ID{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ctx, identity.ID{}, false
	}
	peerID := identity.PeerID
	if b != nil {
		peerID = b.PeerID
	}
	id, err := peerID(ti.State)
	if err != nil {
		return ctx, identity.ID{}, false
	}
	return WithCaller(ctx, id.String()), id, true
}

// ControlServer serves the control API of a Store, with the standard
// health and reflection services beside it. It is started on a Store
// that is open and stopped before the Store closes, so its health says
// SERVING exactly while the Store is up.
type ControlServer struct {
	srv    *grpc.Server
	health *health.Server
	down   context.Context // canceled when the server stops
	stop   context.CancelFunc
}

// NewControlServer returns a gRPC server for c that serves mTLS clients
// of id's trust domain, and clients without a certificate SignCertificate
// only, and authorizes every change by the caller's verified identity
// (authz.go). It presents id's certificate followed by its trust
// domain's roots, so that a new gateway can check the server against the
// root hash of its join token.
func NewControlServer(c Control, id *identity.Bundle) *ControlServer {
	opts := append(controlServerOptions(), grpc.Creds(establishingCreds{credentials.NewTLS(id.EnrolmentServerConfig())}))
	srv := grpc.NewServer(append(opts, requireCertificate()...)...)
	statev1.RegisterControlServer(srv, controlService{c: c, authz: newAuthorizer(c), id: id})
	s := &ControlServer{srv: srv, health: health.NewServer()}
	s.down, s.stop = context.WithCancel(context.Background())
	for _, svc := range []string{"", statev1.Control_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(srv, &healthService{Server: s.health, down: s.down})
	reflection.Register(srv)
	return s
}

// Serve accepts on ln until Stop.
func (s *ControlServer) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Stop reports NOT_SERVING, closes the listener and every connection and
// waits for handlers.
func (s *ControlServer) Stop() {
	s.goingDown()
	s.srv.Stop()
}

// GracefulStop reports NOT_SERVING (ending health watches), stops
// accepting and waits for pending calls or ctx.
func (s *ControlServer) GracefulStop(ctx context.Context) {
	s.goingDown()
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

func (s *ControlServer) goingDown() {
	s.health.Shutdown()
	s.stop()
}

// healthService is grpc's standard health service, except that a watch
// ends when the server goes down: the watcher is told NOT_SERVING, then
// its stream closes, so that GracefulStop does not wait for watchers.
type healthService struct {
	*health.Server
	down context.Context
}

// Watch streams the status of a service until the client leaves or the
// server goes down.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(h.down, cancel)()
	w := &watchStream{ServerStreamingServer: stream, ctx: ctx, last: -1}
	err := h.Server.Watch(req, w)
	if h.down.Err() == nil || stream.Context().Err() != nil {
		return err
	}
	// Going down. The inner Watch may have seen its context end before the
	// NOT_SERVING that Shutdown queued: say it here.
	if w.last == healthpb.HealthCheckResponse_SERVING {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "control server stopping")
}

// watchStream is a watch's stream with a context that ends when the server
// goes down; it remembers the last status sent. Only the handler's
// goroutine uses it.
type watchStream struct {
	grpc.ServerStreamingServer[healthpb.HealthCheckResponse]
	ctx  context.Context
	last healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	if err := w.ServerStreamingServer.Send(r); err != nil {
		return err
	}
	w.last = r.GetStatus()
	return nil
}

// toStatus maps errors to gRPC codes the client maps back.
func toStatus(err error) error {
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrBadSnapshot):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNotLeader):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrDisabled), errors.Is(err, ErrNoCA):
		return status.Error(codes.Unimplemented, err.Error())
	case errors.Is(err, ErrDenied):
		return status.Error(codes.PermissionDenied, err.Error())
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
		return e.code == codes.Unimplemented && !strings.Contains(e.msg, ErrNoCA.Error())
	case ErrNoCA:
		return e.code == codes.Unimplemented && strings.Contains(e.msg, ErrNoCA.Error())
	case ErrNoCertificate:
		return e.code == codes.Unauthenticated
	case ErrDenied:
		return e.code == codes.PermissionDenied
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

// ControlClient calls another gateway's control API. A change asked of
// a follower is answered with the leader's address; the client then asks
// the leader itself (at most maxRedirects times).
type ControlClient struct {
	addr string
	tls  *tls.Config // how it and the clients of leaders it is sent to dial
	cc   *grpc.ClientConn
	rpc  statev1.ControlClient

	mu     sync.Mutex
	others map[string]*ControlClient // clients of leaders it was sent to
}

var _ Control = (*ControlClient)(nil)

// maxRedirects bounds how often one call follows a leader's address.
const maxRedirects = 3

// DialControl returns a client for the control API at addr, presenting
// id's certificate. It connects lazily.
func DialControl(addr string, id *identity.Bundle) (*ControlClient, error) {
	return dialControlTLS(addr, id.ClientConfig("control.strait"))
}

// dialControlTLS returns a client for the control API at addr that
// dials with conf (a bundle's, or a join token's without a certificate).
func dialControlTLS(addr string, conf *tls.Config) (*ControlClient, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(conf)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxControlMsg), grpc.MaxCallSendMsgSize(maxControlMsg)),
	)
	if err != nil {
		return nil, fmt.Errorf("control client for %s: %w", addr, err)
	}
	return &ControlClient{addr: addr, tls: conf, cc: cc, rpc: statev1.NewControlClient(cc), others: map[string]*ControlClient{}}, nil
}

// Close closes the connection, and those to leaders it was sent to.
func (c *ControlClient) Close() error {
	c.mu.Lock()
	others := c.others
	c.others = map[string]*ControlClient{}
	c.mu.Unlock()
	for _, o := range others {
		o.Close()
	}
	return c.cc.Close()
}

// at returns the client for addr: c itself, or one dialled for it.
func (c *ControlClient) at(addr string) (*ControlClient, error) {
	if addr == c.addr {
		return c, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.others[addr]; ok {
		return o, nil
	}
	o, err := dialControlTLS(addr, c.tls)
	if err != nil {
		return nil, err
	}
	c.others[addr] = o
	return o, nil
}

// invoke converts a request to its message, calls method and converts the
// answer back, following a follower to its leader. A request protobuf
// cannot carry (a string that is not UTF-8) is refused as invalid before
// anything is sent.
func invoke[Req any, PReq proto.Message, PResp, Resp any](ctx context.Context, c *ControlClient, method string, req *Req,
	in func(*Req) PReq, call func(statev1.ControlClient, context.Context, PReq, ...grpc.CallOption) (PResp, error), out func(PResp) *Resp) (*Resp, error) {
	preq := in(req)
	if err := checkUTF8(preq); err != nil {
		return nil, fmt.Errorf("control %s to %s: %w", method, c.addr, err)
	}
	at := c
	for hop := 0; ; hop++ {
		var trailer metadata.MD
		resp, err := call(at.rpc, ctx, preq, grpc.Trailer(&trailer))
		if err == nil {
			return out(resp), nil
		}
		leader := trailer.Get(leaderTrailer)
		if status.Code(err) != codes.FailedPrecondition || len(leader) != 1 || leader[0] == at.addr || hop == maxRedirects {
			return nil, fromStatus(at.addr, method, err)
		}
		if at, err = c.at(leader[0]); err != nil {
			return nil, fmt.Errorf("control %s: follow the leader to %s: %w", method, leader[0], err)
		}
	}
}

func (c *ControlClient) Write(ctx context.Context, req *WriteRequest) (*WriteResponse, error) {
	return invoke(ctx, c, "Write", req, writeRequestToPB, statev1.ControlClient.Write, writeResponseFromPB)
}
func (c *ControlClient) Read(ctx context.Context, req *ReadRequest) (*ReadResponse, error) {
	return invoke(ctx, c, "Read", req, readRequestToPB, statev1.ControlClient.Read, readResponseFromPB)
}
func (c *ControlClient) History(ctx context.Context, req *HistoryRequest) (*HistoryResponse, error) {
	return invoke(ctx, c, "History", req, historyRequestToPB, statev1.ControlClient.History, historyResponseFromPB)
}
func (c *ControlClient) Join(ctx context.Context, req *JoinRequest) (*JoinResponse, error) {
	return invoke(ctx, c, "Join", req, joinRequestToPB, statev1.ControlClient.Join, joinResponseFromPB)
}
func (c *ControlClient) Discover(ctx context.Context, req *DiscoverRequest) (*DiscoverResponse, error) {
	return invoke(ctx, c, "Discover", req, discoverRequestToPB, statev1.ControlClient.Discover, discoverResponseFromPB)
}
func (c *ControlClient) Peers(ctx context.Context, req *PeersRequest) (*PeersResponse, error) {
	return invoke(ctx, c, "Peers", req, peersRequestToPB, statev1.ControlClient.Peers, peersResponseFromPB)
}
func (c *ControlClient) RemovePeer(ctx context.Context, req *RemovePeerRequest) (*RemovePeerResponse, error) {
	return invoke(ctx, c, "RemovePeer", req, removePeerRequestToPB, statev1.ControlClient.RemovePeer, removePeerResponseFromPB)
}
func (c *ControlClient) Snapshot(ctx context.Context, req *SnapshotRequest) (*SnapshotResponse, error) {
	return invoke(ctx, c, "Snapshot", req, snapshotRequestToPB, statev1.ControlClient.Snapshot, snapshotResponseFromPB)
}
func (c *ControlClient) Restore(ctx context.Context, req *RestoreRequest) (*RestoreResponse, error) {
	return invoke(ctx, c, "Restore", req, restoreRequestToPB, statev1.ControlClient.Restore, restoreResponseFromPB)
}
func (c *ControlClient) SignCertificate(ctx context.Context, req *SignRequest) (*SignResponse, error) {
	return invoke(ctx, c, "SignCertificate", req, signRequestToPB, statev1.ControlClient.SignCertificate, signResponseFromPB)
}
