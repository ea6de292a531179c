package lab_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count open files: %v", err)
	}
	return len(ents)
}

// TestNoLeaksAfterThousandsOfConnections: connections through both
// gateways (per-import port, mTLS between them) leave no goroutine and no
// open file behind once they are closed, including connections the client
// abandons half-way. (A socket the gateway forgot to close can still be
// closed by its finalizer when the GC runs; goroutines have no such rescue.)
func TestNoLeaksAfterThousandsOfConnections(t *testing.T) {
	l := twoClusters(t)
	imp := l.Gateway("a").ImportAddrs()["demo/ledger:8080"]
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	// Every fifth request goes through the proxy port (the path that waits
	// for the remote answer) instead of the import port (first bytes sent
	// with the stream); both share the pooled tunnels.
	proxyURL, err := url.Parse("http://" + l.Gateway("a").ConnectAddr())
	if err != nil {
		t.Fatal(err)
	}
	viaProxy := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyURL(proxyURL)}}
	// Warm up: the first connections create pools and timers that live on,
	// and the stream the gateway keeps for the next proxied request.
	for range 20 {
		getJSON(t, client, "http://"+imp+"/")
		getJSON(t, viaProxy, "http://ledger.demo.svc.clusterset.local:8080/")
	}
	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	const n = 2000
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		if i%10 == 9 {
			// Abandon a connection after sending half a request.
			c, err := net.DialTimeout("tcp", imp, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHo")
			c.Close()
			continue
		}
		if i%5 == 4 {
			getJSON(t, viaProxy, "http://ledger.demo.svc.clusterset.local:8080/")
			continue
		}
		getJSON(t, client, "http://"+imp+"/")
	}
	client.CloseIdleConnections()
	viaProxy.CloseIdleConnections()

	var g, fd int
	// No runtime.GC here: finalizers would close leaked sockets and hide them.
	for wait := time.Now(); time.Since(wait) < 15*time.Second; time.Sleep(50 * time.Millisecond) {
		g, fd = runtime.NumGoroutine(), openFDs(t)
		if g <= baseG+2 && fd <= baseFD+2 {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("after %d connections: %d goroutines (baseline %d), %d open files (baseline %d)\n%s", n, g, baseG, fd, baseFD, buf[:runtime.Stack(buf, true)])
}
