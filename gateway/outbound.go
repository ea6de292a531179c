package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// hopByHop are the connection-specific header fields of RFC 9110 7.6.1
// (and the proxy ones clients still send): never forwarded.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Transfer-Encoding", "Upgrade", "Trailer",
	"Proxy-Authorization", "Proxy-Authenticate"}

// forwardHeader removes from h what a proxy must not forward: hop-by-hop
// fields, the fields the Connection header names, and every X-Strait-*
// field a client sent (the gateway's own headers are its to set).
func forwardHeader(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
	for name := range h {
		if strings.HasPrefix(name, "X-Strait-") {
			delete(h, name)
		}
	}
}

// sourceNamespaceHeader lets a workload on the CONNECT port say which
// namespace it runs in, for classes that match sources by namespace. It is
// the workload's own claim: it can put a flow in a class, never take one
// out of a class its service or region puts it in.
const sourceNamespaceHeader = "X-Strait-Source-Namespace"

// serveConnect handles one local workload connection on the CONNECT port.
// It accepts "CONNECT <svc>.<ns>.svc.clusterset.local:<port>" and, for
// plain HTTP proxies, absolute-form requests such as
// "GET http://<svc>.<ns>.svc.clusterset.local:<port>/path". Absolute-form
// requests keep the connection alive: each one is classified, planned and
// routed on its own, in order, so one connection can carry requests to
// several services and clusters; pipelined requests wait their turn.
func (g *Gateway) serveConnect(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	wait := g.cfg.Timeouts.Connect // for the first request; then as long as the connection may idle
	for {
		req, ok := g.readProxyRequest(c, br, wait)
		if !ok {
			return
		}
		if req.Method == http.MethodConnect {
			g.serveConnectTunnel(c, br, req)
			return
		}
		if !g.serveProxyRequest(c, req) {
			return
		}
		wait = g.cfg.Timeouts.Idle
	}
}

// readProxyRequest reads one request within wait (readRequest); on a bad
// or oversized head it answers the client and reports false.
func (g *Gateway) readProxyRequest(c net.Conn, br *bufio.Reader, wait time.Duration) (*http.Request, bool) {
	c.SetReadDeadline(time.Now().Add(wait))
	req, err := readRequest(br)
	var bad *badHeadError
	switch {
	case err == nil:
	case errors.Is(err, errHeadTooLarge):
		g.metrics.httpRequests.WithLabelValues("", "", "431").Inc()
		writeHTTPError(c, http.StatusRequestHeaderFieldsTooLarge, err.Error())
		return nil, false
	case errors.As(err, &bad):
		g.metrics.httpRequests.WithLabelValues("", "", "400").Inc()
		writeHTTPError(c, http.StatusBadRequest, "bad proxy request: "+err.Error())
		return nil, false
	default: // closed, timed out or reset between requests
		return nil, false
	}
	c.SetReadDeadline(time.Time{})
	if req.Method != http.MethodConnect && !(req.URL.IsAbs() && req.URL.Scheme == "http") {
		g.metrics.httpRequests.WithLabelValues("", "", "405").Inc()
		writeHTTPError(c, http.StatusMethodNotAllowed, "this port is an HTTP proxy: send CONNECT <service>.<namespace>.svc.clusterset.local:<port> or an absolute http:// URL")
		return nil, false
	}
	return req, true
}

// proxyTarget parses where a proxy request goes and what the gateway
// knows of it; on a bad request it answers the client and reports false.
func proxyTarget(c net.Conn, req *http.Request) (wire.Target, route.FlowIn, bool) {
	authority, entry := req.Host, "connect"
	if req.Method != http.MethodConnect {
		authority, entry = req.URL.Host, "http"
		if req.URL.Port() == "" {
			authority += ":80"
		}
	}
	t, err := wire.ParseAuthority(authority)
	if err != nil {
		writeHTTPError(c, http.StatusBadRequest, err.Error())
		return wire.Target{}, route.FlowIn{}, false
	}
	in := route.FlowIn{Entry: entry, Headers: req.Header, Namespace: req.Header.Get(sourceNamespaceHeader)}
	if in.Namespace != "" && !sovereignty.IsLabel(in.Namespace) {
		writeHTTPError(c, http.StatusBadRequest, fmt.Sprintf("%s: %q is not a namespace (a DNS label)", sourceNamespaceHeader, in.Namespace))
		return wire.Target{}, route.FlowIn{}, false
	}
	return t, in, true
}

// connectFor routes a proxy request; when no cluster takes it, it answers
// the client with the refusal (status) and returns nil.
func (g *Gateway) connectFor(c net.Conn, t wire.Target, in route.FlowIn) (up net.Conn, rt destination, status int) {
	up, rt, err := g.connectTarget(g.ctx, t, in)
	if err != nil {
		return nil, rt, g.refuseProxy(c, t, in, err)
	}
	return up, rt, http.StatusOK
}

// refuseProxy answers a proxy client whose request no cluster took.
func (g *Gateway) refuseProxy(c net.Conn, t wire.Target, in route.FlowIn, err error) int {
	status := http.StatusServiceUnavailable
	var nre *route.NoRouteError
	if errors.As(err, &nre) {
		status = nre.Status()
	}
	g.outboundFailed(t.String(), in, err)
	writeHTTPError(c, status, err.Error())
	return status
}

// serveConnectTunnel answers a CONNECT once the remote side said OK and
// carries the bytes both ways.
func (g *Gateway) serveConnectTunnel(c net.Conn, br *bufio.Reader, req *http.Request) {
	t, in, ok := proxyTarget(c, req)
	if !ok {
		return
	}
	up, rt, _ := g.connectFor(c, t, in)
	if up == nil {
		return
	}
	defer up.Close()
	if _, err := fmt.Fprintf(c, "HTTP/1.1 200 Connection established\r\nX-Strait-Cluster: %s\r\nX-Strait-Region: %s\r\n\r\n", rt.cluster, rt.region); err != nil {
		return
	}
	// Bytes the client sent right after its CONNECT are already buffered.
	if n := br.Buffered(); n > 0 {
		buf, _ := br.Peek(n)
		if _, err := up.Write(buf); err != nil {
			return
		}
	}
	g.carry(c, up, t, rt)
}

// maxRetryBody is the largest request body kept so that an idempotent
// request can be sent again.
const maxRetryBody = 64 << 10

// idempotent methods may be sent twice (RFC 9110 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// serveProxyRequest carries one absolute-form request on a stream of its
// own (the next request may name another service) and writes the
// response back. A request that never reached a service moves to the
// next allowed cluster at once (connect); an idempotent one whose stream
// broke before its response started is sent once more, to the next
// allowed cluster of the same plan, within the service's retry budget. It
// reports whether the client connection can carry another request: not
// after an error, a refusal (the request body may be unread), or when
// either side asked to close.
func (g *Gateway) serveProxyRequest(c net.Conn, req *http.Request) bool {
	start := time.Now()
	t, in, ok := proxyTarget(c, req)
	if !ok {
		g.metrics.httpRequests.WithLabelValues("", "", "400").Inc()
		return false
	}
	svc := t.String()
	g.retries.request(svc)
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.Timeouts.Budget)
	defer cancel()
	fail := func(err error) bool {
		g.metrics.httpRequests.WithLabelValues(svc, "", strconv.Itoa(g.refuseProxy(c, t, in, err))).Inc()
		return false
	}
	a, err := g.prepare(t, in)
	if err != nil {
		return fail(err)
	}
	up, cand, rt, err := a.connect(ctx)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	keepAlive := !req.Close
	if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return false
		}
	}
	var body []byte // kept for a retry
	retryable := idempotent(req.Method) && len(req.TransferEncoding) == 0 && req.ContentLength <= maxRetryBody
	if retryable && req.ContentLength > 0 {
		if body, err = io.ReadAll(req.Body); err != nil {
			writeHTTPError(c, http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
			return false
		}
	}
	req.Close = true // upstream: one request per stream
	req.RequestURI = ""
	forwardHeader(req.Header)
	req.Header.Del("Expect")
	var resp *http.Response
	for retried := false; ; retried = true {
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		if resp, err = roundTrip(up, req); err == nil {
			break
		}
		g.metrics.connections.WithLabelValues("outbound", svc, rt.cluster, "broken").Inc()
		switch {
		case !retryable || retried:
		case !g.retries.retry(svc):
			g.metrics.httpRetries.WithLabelValues(svc, "budget").Inc()
		default:
			g.metrics.httpRetries.WithLabelValues(svc, "retried").Inc()
			g.log.Info("request retried on the next allowed cluster", "service", svc, "cluster", rt.cluster, "err", err)
			up.Close()
			a.failed(cand, err)
			if up, cand, rt, err = a.connect(ctx); err != nil {
				return fail(err)
			}
			continue
		}
		g.metrics.httpRequests.WithLabelValues(svc, rt.cluster, "502").Inc()
		writeHTTPError(c, http.StatusBadGateway, fmt.Sprintf("%s via %s: %v", t, rt.cluster, err))
		return false
	}
	defer resp.Body.Close()
	// A body that ends only with the stream cannot be framed for the
	// client's next request. (The upstream stream itself always closes.)
	keepAlive = keepAlive && (resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0)
	forwardHeader(resp.Header)
	resp.Header.Set("X-Strait-Cluster", rt.cluster)
	resp.Header.Set("X-Strait-Region", rt.region)
	resp.Close = !keepAlive
	cw := &countWriter{w: c}
	werr := resp.Write(cw)
	g.metrics.connections.WithLabelValues("outbound", svc, rt.cluster, "ok").Inc()
	g.metrics.bytes.WithLabelValues("outbound", svc, rt.cluster, "rx").Add(float64(cw.n))
	g.metrics.httpRequests.WithLabelValues(svc, rt.cluster, strconv.Itoa(resp.StatusCode)).Inc()
	g.metrics.httpSeconds.WithLabelValues(svc, rt.cluster).Observe(time.Since(start).Seconds())
	return werr == nil && keepAlive
}

// roundTrip sends req on up and reads its final response (1xx answers
// skipped). An error means no response started.
func roundTrip(up net.Conn, req *http.Request) (*http.Response, error) {
	if err := req.Write(up); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	br := bufio.NewReader(up)
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
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

// serveImport handles one connection on an import's local port. The
// gateway reads nothing from it before choosing a cluster: the flow is
// L4, classified without headers.
func (g *Gateway) serveImport(c net.Conn, im Import) {
	defer c.Close()
	t := im.Target()
	in := route.FlowIn{Entry: "import", Namespace: im.Namespace}
	if err := g.relayTarget(c, t, in, nil, false); err != nil {
		g.outboundFailed(t.String(), in, err)
	}
}

func (g *Gateway) carry(client, up net.Conn, t wire.Target, rt destination) {
	g.meteredSplice("outbound", t.String(), rt.cluster, time.Now(), client, up)
}

func writeHTTPError(w io.Writer, status int, reason string) {
	reason = strings.ReplaceAll(reason, "\n", " ")
	body := reason + "\n"
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nX-Strait-Reason: %s\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), headerSafe(reason), body)
}

func headerSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	if len(b) > 400 {
		b = b[:400]
	}
	return string(b)
}
