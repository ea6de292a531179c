package gateway

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzProxyRequestHead: reading a proxy request head through the limiter
// never panics, never lets more than maxRequestHead bytes through before
// the head is parsed, and what forwardHeader leaves holds no hop-by-hop or
// X-Strait-* field.
func FuzzProxyRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET http://a.b.svc.clusterset.local:80/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT a.b.svc.clusterset.local:80 HTTP/1.1\r\nX-Data-Residency: eu\r\n\r\n",
		"GET http://a.b.svc.clusterset.local/ HTTP/1.1\r\nConnection: x-a, keep-alive\r\nX-A: 1\r\nX-Strait-Cluster: c\r\nTE: trailers\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n folded\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		src := bytes.NewReader(b)
		limit := &headLimiter{r: src, n: maxRequestHead}
		req, err := http.ReadRequest(bufio.NewReader(limit))
		if read := len(b) - src.Len(); read > maxRequestHead {
			t.Fatalf("%d bytes read for one head", read)
		}
		if err != nil || limit.hit {
			return
		}
		forwardHeader(req.Header)
		for name := range req.Header {
			if strings.HasPrefix(name, "X-Strait-") {
				t.Fatalf("%s left in a forwarded head", name)
			}
			for _, h := range hopByHop {
				if name == h {
					t.Fatalf("hop-by-hop %s left in a forwarded head", name)
				}
			}
		}
		_ = headerFields(req.Header)
	})
}
