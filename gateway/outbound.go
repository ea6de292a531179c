package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// Limits of a request head read on the CONNECT port (beyond them: 431).
const (
	maxRequestHead   = 64 << 10
	maxRequestFields = 100
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

// headLimiter lets at most n bytes through until lifted: a request head
// cannot grow the gateway's memory without bound.
type headLimiter struct {
	r   io.Reader
	n   int
	hit bool
}

func (l *headLimiter) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		l.hit = true
		return 0, errHeadTooLarge
	}
	n, err := l.r.Read(p[:min(len(p), l.n)])
	l.n -= n
	return n, err
}

var errHeadTooLarge = errors.New("request head too large")

// sourceNamespaceHeader lets a workload on the CONNECT port say which
// namespace it runs in, for classes that match sources by namespace. It is
// the workload's own claim: it can put a flow in a class, never take one
// out of a class its service or region puts it in.
const sourceNamespaceHeader = "X-Strait-Source-Namespace"

// serveConnect handles one local workload connection on the CONNECT port.
// It accepts "CONNECT <svc>.<ns>.svc.clusterset.local:<port>" and, for
// plain HTTP proxies, absolute-form requests such as
// "GET http://<svc>.<ns>.svc.clusterset.local:<port>/path".
func (g *Gateway) serveConnect(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	limit := &headLimiter{r: c, n: maxRequestHead}
	br := bufio.NewReader(limit)
	req, err := http.ReadRequest(br)
	switch {
	case limit.hit:
		writeHTTPError(c, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request head larger than %d bytes", maxRequestHead))
		return
	case err != nil:
		if !errors.Is(err, io.EOF) {
			writeHTTPError(c, http.StatusBadRequest, fmt.Sprintf("bad proxy request: %v", err))
		}
		return
	}
	if n := headerFields(req.Header); n > maxRequestFields {
		writeHTTPError(c, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("%d header fields, more than %d", n, maxRequestFields))
		return
	}
	limit.n = -1 // the head is read; what follows is the client's payload
	c.SetReadDeadline(time.Time{})
	var authority string
	switch {
	case req.Method == http.MethodConnect:
		authority = req.Host
	case req.URL.IsAbs() && req.URL.Scheme == "http":
		authority = req.URL.Host
		if req.URL.Port() == "" {
			authority += ":80"
		}
	default:
		writeHTTPError(c, http.StatusMethodNotAllowed, "this port is an HTTP proxy: send CONNECT <service>.<namespace>.svc.clusterset.local:<port> or an absolute http:// URL")
		return
	}
	t, err := wire.ParseAuthority(authority)
	if err != nil {
		writeHTTPError(c, http.StatusBadRequest, err.Error())
		return
	}
	in := route.FlowIn{Entry: "http", Headers: req.Header, Namespace: req.Header.Get(sourceNamespaceHeader)}
	if req.Method == http.MethodConnect {
		in.Entry = "connect"
	}
	if in.Namespace != "" && !sovereignty.IsLabel(in.Namespace) {
		writeHTTPError(c, http.StatusBadRequest, fmt.Sprintf("%s: %q is not a namespace (a DNS label)", sourceNamespaceHeader, in.Namespace))
		return
	}
	up, rt, err := g.connectTarget(g.ctx, t, in)
	if err != nil {
		status := http.StatusServiceUnavailable
		var nre *route.NoRouteError
		if errors.As(err, &nre) {
			status = nre.Status()
		}
		g.outboundFailed(t.String(), in, err)
		writeHTTPError(c, status, err.Error())
		return
	}
	defer up.Close()
	if req.Method == http.MethodConnect {
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
	} else {
		// One request per upstream connection: the next request on this
		// client connection may name another service.
		req.Close = true
		req.RequestURI = ""
		forwardHeader(req.Header)
		if err := req.Write(up); err != nil {
			writeHTTPError(c, http.StatusBadGateway, fmt.Sprintf("forward request to %s via %s: %v", t, rt.cluster, err))
			return
		}
		// The upstream closes after its response (Connection: close).
		g.metrics.connections.WithLabelValues("outbound", t.String(), rt.cluster, "ok").Inc()
		rx, _ := io.Copy(c, up)
		g.metrics.bytes.WithLabelValues("outbound", t.String(), rt.cluster, "rx").Add(float64(rx))
		return
	}
	g.carry(c, up, t, rt)
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

// headerFields counts the fields of a request head.
func headerFields(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}
