package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// FuzzProxyRequestHead: reading requests from a workload never panics,
// never reads more than a bounded head before refusing it, reads each
// body exactly (the next request starts where the last one ended), and
// what forwardHeader leaves holds no hop-by-hop or X-Strait-* field.
func FuzzProxyRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET http://a.b.svc.clusterset.local:80/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT a.b.svc.clusterset.local:80 HTTP/1.1\r\nX-Data-Residency: eu\r\n\r\n",
		"GET http://a.b.svc.clusterset.local/ HTTP/1.1\r\nConnection: x-a, keep-alive\r\nX-A: 1\r\nX-Strait-Cluster: c\r\nTE: trailers\r\n\r\n",
		"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n folded\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		for range 4 {
			req, err := readRequest(br)
			if err != nil {
				var bad *badHeadError
				if !errors.As(err, &bad) && !errors.Is(err, errHeadTooLarge) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
			forwardHeader(req.Header)
			for name := range req.Header {
				if strings.HasPrefix(name, "X-Strait-") || slices.Contains(hopByHop, name) {
					t.Fatalf("%s left in a forwarded head", name)
				}
			}
		}
	})
}
