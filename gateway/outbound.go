package gateway

import (
	"bufio"
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
// "GET http://<svc>.<ns>.svc.clusterset.local:<port>/path", and HTTP/2
// with prior knowledge whose :authority names the service. Requests keep
// the connection alive: each one is classified, planned and routed on its
// own, in order (serveHTTP1), so one connection can carry requests to
// several services and clusters.
func (g *Gateway) serveConnect(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(g.cfg.Timeouts.Connect))
	h2, _, err := clientSpeaks(br)
	c.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
	case h2:
		g.serveH2(c, br, nil, route.FlowIn{Entry: "http"}, nil, "")
	default:
		g.serveHTTP1(c, br, nil, route.FlowIn{}, nil, "", g.cfg.Timeouts.Connect)
	}
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

// serveConnectTunnel serves a CONNECT. To a port that speaks HTTP it
// answers at once and serves the requests inside the tunnel one by one
// (serveHTTPPort), once the flow as the CONNECT describes it has
// somewhere to go; to any other port it answers once a remote side said
// OK and carries the bytes both ways, which the gateway cannot read.
func (g *Gateway) serveConnectTunnel(c net.Conn, br *bufio.Reader, req *http.Request) {
	t, in, ok := proxyTarget(c, req)
	if !ok {
		return
	}
	if proto := g.portProtocol(t, ""); speaksHTTP(proto) {
		// Requests inside carry at least the classes of the CONNECT and
		// its fields: when it has nowhere to go, neither have they.
		if _, err := g.prepare(g.ctx, t, in); err != nil {
			g.refuseProxy(c, t, in, err)
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
		outer := in.Headers
		in.Headers = nil
		g.serveHTTPPort(c, br, t, in, outer, proto, g.cfg.Timeouts.Idle)
		return
	}
	in.Unreadable = true
	ctx, span := g.flowSpan(g.ctx, t, in)
	defer span.End()
	up, rt, err := g.connectTarget(ctx, t, in)
	if err != nil {
		spanFailed(span, err)
		g.refuseProxy(c, t, in, err)
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

// serveImport handles one connection on an import's local port. A port
// that speaks HTTP is served request by request (serveHTTPPort); any
// other is carried as bytes to a cluster chosen before anything is read,
// and residency treats the flow as unreadable.
func (g *Gateway) serveImport(c net.Conn, im Import) {
	defer c.Close()
	t := im.Target()
	in := route.FlowIn{Entry: "import", Namespace: im.Namespace}
	if proto := g.portProtocol(t, im.Protocol); speaksHTTP(proto) {
		g.serveHTTPPort(c, bufio.NewReader(c), t, in, nil, proto, g.cfg.Timeouts.Idle)
		return
	}
	in.Unreadable = true
	if err := g.relayTarget(c, t, in, nil, false); err != nil {
		g.outboundFailed(t.String(), in, err)
	}
}

// refuseProxy answers a proxy client whose request no cluster took.
func (g *Gateway) refuseProxy(c net.Conn, t wire.Target, in route.FlowIn, err error) {
	writeHTTPError(c, g.refuseRequest(t, in, err), err.Error())
}

func (g *Gateway) carry(client, up net.Conn, t wire.Target, rt destination) {
	g.meteredSplice("outbound", t.String(), rt.cluster, time.Now(), client, up, nil, nil)
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
