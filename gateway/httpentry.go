package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// The HTTP layer. A port declared http, http2 or grpc is served request by
// request on every entry (its import port, CONNECT tunnels to it, and
// absolute-form requests on the proxy port): each request is classified
// by its own headers, planned and routed on its own, so one client
// connection can carry requests that go to different clusters. The client
// speaks HTTP/1.1 (keep-alive, pipelined requests answered in order) or
// HTTP/2 with prior knowledge (h2c, told by its preface); gRPC is HTTP/2.
// Each request travels to the chosen gateway on a stream of its own,
// whose facts are that request's classification, so the inbound gateway
// re-checks every request; on the stream it is HTTP/1.1 for http ports
// and h2c for http2 and grpc ports, as the service speaks it.

// Port protocols (discovery.Port.Protocol, Import.Protocol).
const (
	protoTCP   = "tcp"
	protoHTTP  = "http"
	protoHTTP2 = "http2"
	protoGRPC  = "grpc"
)

// speaksHTTP reports whether the gateway reads requests on a port of
// protocol proto.
func speaksHTTP(proto string) bool {
	return proto == protoHTTP || proto == protoHTTP2 || proto == protoGRPC
}

// portProtocol says how t's port speaks: as declared (by an import), else
// as this cluster's own service declares it, else as the clusters that
// export it declare it when they agree. Undeclared or disagreeing ports
// are tcp: the gateway does not read them, and residency treats their
// flows as unreadable.
func (g *Gateway) portProtocol(t wire.Target, declared string) string {
	if declared != "" {
		return declared
	}
	if svc, ok := g.local.Load().byKey[t.Namespace+"/"+t.Name]; ok {
		for _, p := range svc.Ports {
			if p.Port == t.Port {
				return orTCP(p.Protocol)
			}
		}
	}
	if g.catalog == nil {
		return protoTCP
	}
	proto := ""
	for _, c := range g.catalog.Snapshot().Clusters {
		s, ok := c.Service(t.Namespace, t.Name)
		if !ok {
			continue
		}
		for _, p := range s.Ports {
			if p.Port != t.Port {
				continue
			}
			switch pp := orTCP(p.Protocol); {
			case proto == "":
				proto = pp
			case proto != pp:
				return protoTCP
			}
		}
	}
	return orTCP(proto)
}

func orTCP(p string) string {
	if p == "" {
		return protoTCP
	}
	return p
}

// h2Preface opens every HTTP/2 connection (RFC 9113 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// clientSpeaks tells from the first bytes of a client connection whether
// it speaks HTTP/2 with prior knowledge or TLS; anything else is taken
// for HTTP/1.1. It waits for the first byte until the read deadline.
func clientSpeaks(br *bufio.Reader) (h2, tls bool, err error) {
	b, err := br.Peek(1)
	if err != nil {
		return false, false, err
	}
	switch b[0] {
	case 0x16: // a TLS handshake record
		return false, true, nil
	case h2Preface[0]:
		p, err := br.Peek(len(h2Preface))
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			// A short HTTP/1.1 request ("PUT /\r\n...") may end before
			// the length of the preface: HTTP/1.1 reads and judges it.
			return false, false, nil
		}
		return string(p) == h2Preface, false, nil
	}
	return false, false, nil
}

// serveHTTPPort serves a client connection to t, a port that speaks HTTP,
// from its first byte (br holds what was read of it). TLS the gateway
// cannot read is carried as bytes, and residency treats the flow as
// unreadable; HTTP/2 and HTTP/1.1 are served request by request.
// outer holds the fields of the CONNECT request that opened the tunnel
// the connection runs in, nil elsewhere (withOuter).
func (g *Gateway) serveHTTPPort(c net.Conn, br *bufio.Reader, t wire.Target, in route.FlowIn, outer http.Header, proto string, wait time.Duration) {
	c.SetReadDeadline(time.Now().Add(wait))
	h2, isTLS, err := clientSpeaks(br)
	c.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		return
	case isTLS:
		first, _ := br.Peek(br.Buffered())
		in.Headers = nil
		in.Unreadable = true
		if err := g.relayTarget(c, t, in, append([]byte(nil), first...), false); err != nil {
			g.outboundFailed(t.String(), in, err)
		}
	case h2:
		g.serveH2(c, br, &t, in, outer, proto)
	default:
		g.serveHTTP1(c, br, &t, in, outer, proto, wait)
	}
}

// serveHTTP1 serves HTTP/1.1 requests from c one after the other until
// the client or an error ends the connection. fixed is the target of
// every request on an import port or inside a CONNECT tunnel; nil on the
// proxy port, where each request names its target (absolute form), and a
// CONNECT hands the connection over to a tunnel.
func (g *Gateway) serveHTTP1(c net.Conn, br *bufio.Reader, fixed *wire.Target, in route.FlowIn, outer http.Header, proto string, wait time.Duration) {
	for {
		req, ok := g.readClientRequest(c, br, wait, in.Entry)
		if !ok {
			return
		}
		if fixed == nil && req.Method == http.MethodConnect {
			g.serveConnectTunnel(c, br, req)
			return
		}
		var t wire.Target
		rin, rp := in, proto
		rin.Headers = req.Header
		switch {
		case fixed != nil:
			t = *fixed
			if outer != nil {
				rin.Headers = withOuter(req.Header, outer)
			}
		default:
			var ok bool
			if t, rin, ok = proxyTarget(c, req); !ok {
				g.metrics.httpRequests.WithLabelValues("", "", "400").Inc()
				return
			}
			// Absolute-form requests are HTTP whatever the port says.
			if rp = g.portProtocol(t, ""); !speaksHTTP(rp) {
				rp = protoHTTP
			}
		}
		if !g.serveRequest1(c, req, t, rin, rp) {
			return
		}
		wait = g.cfg.Timeouts.Idle
	}
}

// withOuter adds to a request's headers the fields of the CONNECT request
// that opened its tunnel (curl --proxy-header): a tunnel marked for a
// class marks every request in it. A field both carry with different
// values makes the request ambiguous.
func withOuter(h, outer http.Header) http.Header {
	m := h.Clone()
	for k, vs := range outer {
		m[k] = append(m[k], vs...)
	}
	return m
}

// readClientRequest reads one request within wait (readRequest); on a
// bad or oversized head it answers the client, audits the refusal and
// reports false. On the proxy port (entry "") a request must be a CONNECT
// or name an absolute http URL; elsewhere CONNECT is refused.
func (g *Gateway) readClientRequest(c net.Conn, br *bufio.Reader, wait time.Duration, entry string) (*http.Request, bool) {
	proxy := entry == ""
	if proxy {
		entry = "http"
	}
	refuse := func(status int, reason string) (*http.Request, bool) {
		g.metrics.httpRequests.WithLabelValues("", "", strconv.Itoa(status)).Inc()
		g.res.audit.Refused("outbound", status)
		g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindDecision, Decision: sovereignty.DecisionDeny, Direction: "outbound",
			Entry: entry, Status: status, Reason: reason})
		writeHTTPError(c, status, reason)
		lingerClose(c)
		return nil, false
	}
	c.SetReadDeadline(time.Now().Add(wait))
	req, err := readRequest(br)
	var bad *badHeadError
	switch {
	case err == nil:
	case errors.Is(err, errHeadTooLarge):
		return refuse(http.StatusRequestHeaderFieldsTooLarge, err.Error())
	case errors.As(err, &bad):
		return refuse(http.StatusBadRequest, "bad request: "+err.Error())
	default: // closed, timed out or reset between requests
		return nil, false
	}
	c.SetReadDeadline(time.Time{})
	switch {
	case proxy && req.Method != http.MethodConnect && !(req.URL.IsAbs() && req.URL.Scheme == "http"):
		return refuse(http.StatusMethodNotAllowed, "this port is an HTTP proxy: send CONNECT <service>.<namespace>.svc.clusterset.local:<port> or an absolute http:// URL")
	case !proxy && req.Method == http.MethodConnect:
		return refuse(http.StatusMethodNotAllowed, "CONNECT is served on the proxy port only")
	}
	return req, true
}

// serveRequest1 carries one HTTP/1.1 request to t and writes the response
// back. It reports whether the client connection can carry another
// request: not after an error, a refusal (the request body may be
// unread), or when either side asked to close.
func (g *Gateway) serveRequest1(c net.Conn, req *http.Request, t wire.Target, in route.FlowIn, proto string) bool {
	start := time.Now()
	svc := t.String()
	keepAlive := !req.Close
	cont := func() error { return nil }
	if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		cont = func() error {
			_, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			return err
		}
	}
	req.Header.Del("Expect")
	ctx, span := g.requestSpan(g.ctx, req, t, in)
	defer span.End()
	ex, err := g.forward(ctx, t, in, req, proto, cont)
	if err != nil {
		status := g.refuseRequest(t, in, err)
		requestStatus(span, status)
		writeHTTPError(c, status, err.Error())
		g.metrics.httpRequests.WithLabelValues(svc, ex.dest.cluster, strconv.Itoa(status)).Inc()
		return false
	}
	defer ex.close()
	resp := ex.resp
	// A body that ends only with the stream cannot be framed for the
	// client's next request. (The upstream stream itself always closes.)
	keepAlive = keepAlive && (resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0 || resp.ProtoMajor == 2)
	resp.Close = !keepAlive
	if resp.ProtoMajor == 2 {
		// From an h2c upstream: framed for HTTP/1.1 by resp.Write.
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	}
	requestStatus(span, resp.StatusCode)
	cw := &countWriter{w: c}
	werr := resp.Write(cw)
	g.metrics.bytes.WithLabelValues("outbound", svc, g.cfg.Cluster, ex.dest.cluster, "rx").Add(float64(cw.n))
	g.requestDone(svc, ex.dest.cluster, resp, start)
	return werr == nil && keepAlive
}

// requestDone counts a request that got a response.
func (g *Gateway) requestDone(svc, cluster string, resp *http.Response, start time.Time) {
	g.metrics.httpRequests.WithLabelValues(svc, cluster, strconv.Itoa(resp.StatusCode)).Inc()
	g.metrics.httpSeconds.WithLabelValues(svc, cluster).Observe(time.Since(start).Seconds())
	if gs := grpcStatus(resp); gs != "" {
		g.metrics.grpcRequests.WithLabelValues(svc, cluster, gs).Inc()
	}
}

// grpcStatus is the gRPC status of a gRPC response (after its body was
// read: it is in the trailers, or in the headers of a trailers-only
// response), "" for other responses.
func grpcStatus(resp *http.Response) string {
	if !isGRPC(resp.Header) {
		return ""
	}
	if s := resp.Trailer.Get("Grpc-Status"); s != "" {
		return s
	}
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		return s
	}
	return "unknown"
}

// refuseRequest counts and audits (forward has) a request no cluster took
// and returns its status.
func (g *Gateway) refuseRequest(t wire.Target, in route.FlowIn, err error) int {
	status := http.StatusServiceUnavailable
	var nre *route.NoRouteError
	var ue *upstreamError
	switch {
	case errors.As(err, &nre):
		status = nre.Status()
	case errors.As(err, &ue):
		status = http.StatusBadGateway
	case errors.As(err, new(*badRequestError)):
		status = http.StatusBadRequest
	}
	g.outboundFailed(t.String(), in, err)
	return status
}

// upstreamError is a request whose stream broke before its response
// started, after the request may have reached the service.
type upstreamError struct {
	target  wire.Target
	cluster string
	err     error
}

func (e *upstreamError) Error() string {
	return fmt.Sprintf("%s via %s: %v", e.target, e.cluster, e.err)
}

func (e *upstreamError) Unwrap() error { return e.err }

// badRequestError is a request the gateway could not read to its end.
type badRequestError struct{ err error }

func (e *badRequestError) Error() string { return "read request body: " + e.err.Error() }

func (e *badRequestError) Unwrap() error { return e.err }

// exchange is a request that got a response; close releases its stream
// once the response body has been read.
type exchange struct {
	resp  *http.Response
	dest  destination
	close func()
}

// maxRetryBody is the largest request body kept so that a request can be
// sent again.
const maxRetryBody = 64 << 10

// idempotent methods may be sent twice (RFC 9110 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// retryable reports whether req may be sent twice: an idempotent method,
// or a gRPC method listed in http.retryableGrpcMethods.
func (g *Gateway) retryable(req *http.Request) bool {
	if idempotent(req.Method) {
		return true
	}
	return req.Method == http.MethodPost && isGRPC(req.Header) &&
		g.cfg.HTTP.retryableGRPC(req.URL.Path)
}

// forward carries one request to t and returns the response, headers
// read. The request is planned with its own classification (in.Headers),
// and goes on a stream kept from an earlier request with the same facts
// to the cluster its plan put first (upstreamPool), or on a new one. A
// request that never reached a service moves to the next allowed cluster
// at once (attempt.connect); a retryable one whose stream broke before
// its response started is sent once more, to the next allowed cluster of
// the same plan, within the service's retry budget (a kept HTTP/1.1
// stream that turns out closed before answering is replaced first,
// outside the budget). cont is called
// once a cluster took the request, before its body is read
// (100-continue). On error, dest names the cluster that broke, if any.
func (g *Gateway) forward(ctx context.Context, t wire.Target, in route.FlowIn, req *http.Request, proto string, cont func() error) (*exchange, error) {
	svc := t.String()
	g.retries.request(svc)
	a, err := g.prepare(ctx, t, in)
	if err != nil {
		return &exchange{}, err
	}
	retry := g.retryable(req)
	// Kept streams carry only requests that may be sent twice: a kept
	// stream may have broken unseen (its tunnel cut a moment ago), and a
	// request that cannot be sent again must know whether it reached a
	// service, which only a new stream's answer tells.
	reuse := retry && req.ContentLength >= 0 && req.ContentLength <= maxRetryBody
	u, err := g.upstreamFor(ctx, a, proto, reuse)
	if err != nil {
		return &exchange{}, err
	}
	if err := cont(); err != nil {
		u.discard()
		return &exchange{dest: u.dest}, err
	}
	var body []byte // kept for a retry
	if retry && req.Body != nil && req.Body != http.NoBody {
		if body, err = readRetryBody(req); err != nil {
			u.discard()
			return &exchange{dest: u.dest}, &badRequestError{err}
		}
		retry = body != nil
	}
	out := outgoing(ctx, req, t, proto)
	g.injectHeader(ctx, out.Header)
	for retried := false; ; {
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
		}
		kind := "new"
		if u.reused {
			kind = "kept"
		}
		g.metrics.httpStreams.WithLabelValues(svc, u.dest.cluster, kind).Inc()
		streamKind(ctx, kind)
		resp, err := u.roundTrip(out)
		if err == nil {
			a.sent(u.dest.cluster)
			return g.exchanged(u, out, resp, svc), nil
		}
		u.drop()
		switch {
		case u.reused && retry && errors.Is(err, errKeptClosed):
			// A kept stream that closed while it waited: open a new one.
			g.log.Debug("kept stream closed; opening another", "service", svc, "cluster", u.dest.cluster, "err", err)
		case !retry || retried:
			g.metrics.connections.WithLabelValues("outbound", svc, g.cfg.Cluster, u.dest.cluster, "broken").Inc()
			return &exchange{dest: u.dest}, &upstreamError{target: t, cluster: u.dest.cluster, err: err}
		case !g.retries.retry(svc):
			g.metrics.connections.WithLabelValues("outbound", svc, g.cfg.Cluster, u.dest.cluster, "broken").Inc()
			g.metrics.httpRetries.WithLabelValues(svc, u.dest.cluster, "budget").Inc()
			return &exchange{dest: u.dest}, &upstreamError{target: t, cluster: u.dest.cluster, err: err}
		default:
			g.metrics.connections.WithLabelValues("outbound", svc, g.cfg.Cluster, u.dest.cluster, "broken").Inc()
			g.metrics.httpRetries.WithLabelValues(svc, u.dest.cluster, "retried").Inc()
			g.log.Info("request retried on the next allowed cluster", "service", svc, "cluster", u.dest.cluster, "err", err)
			a.failed(u.cand, err)
			a.next = max(a.next, slices.Index(a.cands, u.cand)+1)
			retried = true
		}
		if u, err = g.upstreamFor(ctx, a, proto, false); err != nil {
			return &exchange{}, err
		}
	}
}

// exchanged finishes a request that got a response: its stream goes back
// to the pool once the body has been read to its end.
func (g *Gateway) exchanged(u *upstream, out *http.Request, resp *http.Response, svc string) *exchange {
	forwardHeader(resp.Header)
	resp.Header.Set("X-Strait-Cluster", u.dest.cluster)
	resp.Header.Set("X-Strait-Region", u.dest.region)
	g.metrics.connections.WithLabelValues("outbound", svc, g.cfg.Cluster, u.dest.cluster, "ok").Inc()
	keep := u.cc == nil && !resp.Close && !out.Close
	resp.Body = &bodyDone{ReadCloser: resp.Body, done: func(clean bool) {
		switch {
		case u.cc != nil && u.shared: // the connection stays kept
		case u.cc != nil:
			u.cc.Close()
		case keep && clean:
			g.pool.putH1(u.key, u.conn, u.br, u.bw)
		default:
			u.conn.Close()
		}
	}}
	return &exchange{resp: resp, dest: u.dest, close: func() { resp.Body.Close() }}
}

// upstream is where one request goes: an HTTP/1.1 stream, or a stream
// reserved on an HTTP/2 connection.
type upstream struct {
	conn   net.Conn
	br     *bufio.Reader    // HTTP/1.1
	bw     *bufio.Writer    // HTTP/1.1
	cc     *http.ClientConn // HTTP/2
	shared bool             // cc is kept in the pool for other requests
	cand   route.Candidate
	dest   destination
	key    poolKey
	reused bool
}

// upstreamFor returns a stream for a's next request: a kept one to the
// candidate the plan puts next (when reuse), else a new one (connect).
func (g *Gateway) upstreamFor(ctx context.Context, a *attempt, proto string, reuse bool) (*upstream, error) {
	if reuse && a.next < len(a.cands) {
		c := a.cands[a.next]
		k := keyFor(c, a, proto)
		dest := destination{cluster: c.Cluster, region: c.Region}
		if proto == protoHTTP {
			if conn, br, bw := g.pool.takeH1(k); conn != nil {
				return &upstream{conn: conn, br: br, bw: bw, cand: c, dest: dest, key: k, reused: true}, nil
			}
		} else if cc := g.pool.takeH2(k); cc != nil {
			return &upstream{cc: cc, shared: true, cand: c, dest: dest, key: k, reused: true}, nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Budget)
	defer cancel()
	up, c, rt, err := a.connect(cctx)
	if err != nil {
		return nil, err
	}
	u := &upstream{conn: up, cand: c, dest: rt, key: keyFor(c, a, proto)}
	if proto == protoHTTP {
		u.br, u.bw = bufio.NewReader(up), bufio.NewWriter(up)
		return u, nil
	}
	cc, err := newH2Conn(up, a.t.Authority())
	if err == nil {
		err = cc.Reserve()
	}
	if err != nil {
		up.Close()
		return nil, &upstreamError{target: a.t, cluster: rt.cluster, err: fmt.Errorf("start HTTP/2: %w", err)}
	}
	u.cc = cc
	if reuse {
		// Shared with the requests after it that may be sent twice.
		g.pool.putH2(u.key, cc, up)
		u.shared = true
	}
	return u, nil
}

// roundTrip sends req and reads the head of its final response (1xx
// answers skipped). An error means no response started.
func (u *upstream) roundTrip(req *http.Request) (*http.Response, error) {
	if u.cc != nil {
		resp, err := u.cc.RoundTrip(req)
		if err != nil {
			return nil, fmt.Errorf("HTTP/2 request: %w", err)
		}
		return resp, nil
	}
	err := req.Write(u.bw)
	if err == nil {
		err = u.bw.Flush()
	}
	if err != nil {
		if u.reused {
			err = fmt.Errorf("%w: %w", errKeptClosed, err)
		}
		return nil, fmt.Errorf("send request: %w", err)
	}
	for first := true; ; first = false {
		resp, err := http.ReadResponse(u.br, req)
		if err != nil {
			if u.reused && first && errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: %w", errKeptClosed, err)
			}
			return nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// errKeptClosed is a kept HTTP/1.1 stream found closed: the request could
// not be written, or the stream ended before a byte of the response.
var errKeptClosed = errors.New("kept stream closed")

// drop gives up a stream whose request failed.
func (u *upstream) drop() {
	switch {
	case u.cc == nil:
		u.conn.Close()
	case !u.shared:
		u.cc.Close()
	}
}

// discard gives up a stream before its request was sent.
func (u *upstream) discard() {
	if u.cc != nil && u.shared {
		u.cc.Release()
		return
	}
	u.drop()
}

// readRetryBody reads a retryable request's body when it is small enough
// to keep (maxRetryBody): nil when it is not, and then the request's
// body still yields every byte.
func readRetryBody(req *http.Request) ([]byte, error) {
	if req.ContentLength > maxRetryBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxRetryBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRetryBody {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), req.Body), req.Body}
		return nil, nil
	}
	return b, nil
}

// outgoing is the request sent upstream for req: the fields a proxy must
// not forward removed (forwardHeader), "TE: trailers" kept for HTTP/2
// (gRPC needs it); the stream stays open for the next request.
func outgoing(ctx context.Context, req *http.Request, t wire.Target, proto string) *http.Request {
	trailers := false
	for _, v := range req.Header.Values("Te") {
		for _, item := range strings.Split(v, ",") {
			trailers = trailers || strings.EqualFold(strings.TrimSpace(item), "trailers")
		}
	}
	// req is the gateway's own (read from the client, or ReverseProxy's
	// copy): its fields are changed in place, its URL copied.
	out := req.WithContext(ctx)
	u := *req.URL
	out.URL = &u
	forwardHeader(out.Header)
	out.RequestURI = ""
	out.URL.Scheme = "http"
	if out.Host == "" {
		out.Host = t.Authority()
	}
	out.URL.Host = out.Host
	out.Close = false
	if proto == protoHTTP {
		out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	} else {
		out.TransferEncoding = nil
		if trailers {
			out.Header.Set("Te", "trailers")
		}
	}
	return out
}

// countWriter counts what it writes.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// serveH2 serves HTTP/2 with prior knowledge on c (br holds its first
// bytes, the preface among them). Each stream is a request routed on its
// own: to fixed, or on the proxy port (fixed nil) to the service its
// :authority names.
func (g *Gateway) serveH2(c net.Conn, br *bufio.Reader, fixed *wire.Target, in route.FlowIn, outer http.Header, proto string) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	ln := newConnListener(&readerConn{Conn: c, r: br})
	// A header block is bounded like an HTTP/1.1 head (maxRequestHead).
	srv := &http.Server{Protocols: &p, IdleTimeout: g.cfg.Timeouts.Idle, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 250}, MaxHeaderBytes: maxRequestHead,
		BaseContext: func(net.Listener) context.Context { return g.ctx },
		ErrorLog:    slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				ln.Close()
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.serveRequest2(w, r, fixed, in, outer, proto)
		})}
	_ = srv.Serve(ln) // returns once the connection closed
}

// connListener hands out one connection, then waits until it is closed.
type connListener struct {
	c      chan net.Conn
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func newConnListener(c net.Conn) *connListener {
	l := &connListener{c: make(chan net.Conn, 1), addr: c.LocalAddr(), closed: make(chan struct{})}
	l.c <- c
	return l
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// readerConn reads what a bufio.Reader holds of a connection before the
// rest of it.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveRequest2 carries one HTTP/2 request (ReverseProxy with forward as
// its transport) and writes the response back.
func (g *Gateway) serveRequest2(w http.ResponseWriter, r *http.Request, fixed *wire.Target, in route.FlowIn, outer http.Header, proto string) {
	start := time.Now()
	var t wire.Target
	if fixed != nil {
		t = *fixed
	} else {
		authority := r.Host
		if _, _, err := net.SplitHostPort(authority); err != nil {
			authority += ":80"
		}
		var err error
		if t, err = wire.ParseAuthority(authority); err != nil {
			g.metrics.httpRequests.WithLabelValues("", "", "400").Inc()
			writeH2Error(w, r, http.StatusBadRequest, err.Error())
			return
		}
		if proto = g.portProtocol(t, ""); !speaksHTTP(proto) {
			proto = protoHTTP
		}
	}
	svc := t.String()
	if proto == protoHTTP && isGRPC(r.Header) {
		// gRPC needs HTTP/2 end to end (trailers), whatever the port says.
		proto = protoGRPC
	}
	in.Headers = r.Header
	if outer != nil {
		in.Headers = withOuter(r.Header, outer)
	}
	var ex *exchange
	ctx, span := g.requestSpan(r.Context(), r, t, in)
	defer span.End()
	rp := &httputil.ReverseProxy{
		Rewrite: func(*httputil.ProxyRequest) {},
		Transport: roundTripFunc(func(out *http.Request) (*http.Response, error) {
			var err error
			ex, err = g.forward(ctx, t, in, out, proto, func() error { return nil })
			if err != nil {
				return nil, err
			}
			return ex.resp, nil
		}),
		FlushInterval: 0, // streaming responses (gRPC, no Content-Length) are flushed at once
		BufferPool:    bufferPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status := g.refuseRequest(t, in, err)
			cluster := ""
			if ex != nil {
				cluster = ex.dest.cluster
			}
			g.metrics.httpRequests.WithLabelValues(svc, cluster, strconv.Itoa(status)).Inc()
			requestStatus(span, status)
			writeH2Error(w, r, status, err.Error())
		},
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	rp.ServeHTTP(w, r)
	if ex != nil && ex.resp != nil {
		requestStatus(span, ex.resp.StatusCode)
		ex.close()
		g.requestDone(svc, ex.dest.cluster, ex.resp, start)
	}
}

// isGRPC reports whether a request or response is gRPC.
func isGRPC(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "application/grpc")
}

// bufferPool lends ReverseProxy the copy buffers of splice.
type bufferPool struct{}

func (bufferPool) Get() []byte  { return *copyBufs.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBufs.Put(&b) }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// grpcCodes maps the gateway's refusals to gRPC status codes.
var grpcCodes = map[int]int{
	http.StatusBadRequest:         3,  // INVALID_ARGUMENT
	http.StatusForbidden:          7,  // PERMISSION_DENIED
	http.StatusNotFound:           12, // UNIMPLEMENTED, as gRPC maps HTTP 404
	http.StatusBadGateway:         14, // UNAVAILABLE
	http.StatusServiceUnavailable: 14,
}

// writeH2Error answers a request the gateway refused: a gRPC call with a
// trailers-only response carrying the gRPC status, anything else like an
// HTTP/1.1 refusal.
func writeH2Error(w http.ResponseWriter, r *http.Request, status int, reason string) {
	reason = headerSafe(strings.ReplaceAll(reason, "\n", " "))
	h := w.Header()
	h.Set("X-Strait-Reason", reason)
	if isGRPC(r.Header) {
		code, ok := grpcCodes[status]
		if !ok {
			code = 2 // UNKNOWN
		}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", grpcMessage(reason))
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, reason+"\n")
}

// grpcMessage percent-encodes a grpc-message value (gRPC over HTTP/2).
func grpcMessage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// lingerClose ends the gateway's side of a connection it refused while the
// client may still be sending (an oversized head), and reads what the
// client sends for a moment before the caller closes it: closing with
// unread bytes makes the kernel reset the connection, and a reset can
// destroy the refusal before the client has read it. Bounded in time and
// bytes; a client that closes its side ends it at once.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c, 64<<20)
}
