package lab_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/lab"
)

// TestKilledGatewayDiesAtOnce: a killed gateway closes its listeners and
// open connections at once, traffic moves to the next cluster without
// waiting for a timeout, and the others see it die, not leave.
func TestKilledGatewayDiesAtOnce(t *testing.T) {
	pb := startDemo(t, "demo/profile", "b", "eu-central", nil)
	pc := startDemo(t, "demo/profile", "c", "us-east", nil)
	l := startLab(t,
		lab.ClusterSpec{Name: "a", Region: "eu-central"},
		lab.ClusterSpec{Name: "b", Region: "eu-central", Services: []discovery.Service{pb}},
		lab.ClusterSpec{Name: "c", Region: "us-east", Services: []discovery.Service{pc}},
	)
	const authority = "profile.demo.svc.clusterset.local:8080"
	open, err := net.DialTimeout("tcp", l.Gateway("a").ConnectAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(open, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(open)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Strait-Cluster") != "b" {
		t.Fatalf("CONNECT: %s via %q, want 200 via b", resp.Status, resp.Header.Get("X-Strait-Cluster"))
	}
	dataB := l.Gateway("b").DataAddr()

	if err := l.KillGateway("b"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	open.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("open connection through the killed gateway: read = %d, %v; want EOF at once", n, err)
	}
	if c, err := net.DialTimeout("tcp", dataB, time.Second); err == nil {
		c.Close()
		t.Fatalf("killed gateway still accepts on %s", dataB)
	}
	resp, r := viaConnect(t, l.Gateway("a").ConnectAddr(), authority)
	if resp.StatusCode != http.StatusOK || r.Cluster != "c" {
		t.Fatalf("after the kill: %s served by %q, want c", resp.Status, r.Cluster)
	}
	if took := time.Since(killed); took > 900*time.Millisecond {
		t.Errorf("failover took %s, longer than a connect timeout", took)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		state := ""
		for _, c := range l.Gateway("a").Catalog().Snapshot().Clusters {
			if c.Cluster == "b" {
				state = c.State
			}
		}
		if state == "left" {
			t.Fatal("a sees the killed gateway as left, want dead")
		}
		if state == "dead" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a sees b %q 15s after the kill, want dead", state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
