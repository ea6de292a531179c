package lab_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxyForwardsOnlyWhatItMay: on the CONNECT port's absolute-form
// path the gateway forwards a request without its hop-by-hop fields, the
// fields its Connection header names, and any X-Strait-* field the client
// sent; the rest arrives as sent.
func TestProxyForwardsOnlyWhatItMay(t *testing.T) {
	l := twoClusters(t)
	a := l.Gateway("a")
	h := http.Header{
		"Connection":                {"x-private"},
		"X-Private":                 {"1"},
		"Keep-Alive":                {"timeout=5"},
		"Upgrade":                   {"websocket"},
		"Te":                        {"trailers"},
		"Proxy-Authorization":       {"Basic eDp5"},
		"X-Strait-Cluster":          {"us-east-1"},
		"X-Strait-Source-Namespace": {"payments"},
		"X-Kept":                    {"yes"},
	}
	resp, r := viaProxy(t, a.ConnectAddr(), "http://ledger.demo.svc.clusterset.local:8080/headers", h)
	if resp.StatusCode != http.StatusOK || r.Cluster != "b" {
		t.Fatalf("%s, served by %q", resp.Status, r.Cluster)
	}
	if r.Headers.Get("X-Kept") != "yes" {
		t.Errorf("X-Kept did not arrive: %v", r.Headers)
	}
	for _, name := range []string{"X-Private", "Keep-Alive", "Upgrade", "Te", "Proxy-Authorization", "X-Strait-Cluster", "X-Strait-Source-Namespace"} {
		if vs, ok := r.Headers[name]; ok {
			t.Errorf("%s forwarded: %q", name, vs)
		}
	}
}

// TestProxyBoundsTheRequestHead: a request head over 64 KiB, or with more
// than 100 fields, is answered 431 and not forwarded; one just under the
// limits is carried.
func TestProxyBoundsTheRequestHead(t *testing.T) {
	l := twoClusters(t)
	a := l.Gateway("a")
	send := func(t *testing.T, fields []string) int {
		t.Helper()
		c, err := net.DialTimeout("tcp", a.ConnectAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		head := "GET http://ledger.demo.svc.clusterset.local:8080/ HTTP/1.1\r\nHost: ledger.demo.svc.clusterset.local:8080\r\nConnection: close\r\n" +
			strings.Join(fields, "") + "\r\n"
		go c.Write([]byte(head)) // an oversized head may be refused before it is all written
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	many := func(n, size int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("X-F%d: %s\r\n", i, strings.Repeat("v", size)))
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		fields []string
		want   int
	}{
		{"97 small fields", many(97, 10), http.StatusOK},
		{"101 fields", many(101, 10), http.StatusRequestHeaderFieldsTooLarge},
		{"a 60 KiB field", many(1, 60<<10), http.StatusOK},
		{"a 70 KiB field", many(1, 70<<10), http.StatusRequestHeaderFieldsTooLarge},
		{"64 MiB of fields", many(64, 1<<20), http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := send(t, tc.fields); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
}
