package lab_test

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/lab"
)

// serve accepts on ln until the test ends and runs handle for each
// connection, closing it afterwards; the cleanup waits for the handlers.
func serve(t *testing.T, ln net.Listener, handle func(net.Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// serveTCP is serve on a fresh loopback port.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for a test server: %v", err)
	}
	return serve(t, ln, handle)
}

// serviceAt is the discovery entry of service key ("namespace/name") with
// one port, served at addr.
func serviceAt(key, portName string, port int, addr string, labels map[string]string) discovery.Service {
	_, ps, _ := net.SplitHostPort(addr)
	target, _ := strconv.Atoi(ps)
	ns, name, _ := strings.Cut(key, "/")
	return discovery.Service{Namespace: ns, Name: name, Labels: labels, Endpoints: []string{"127.0.0.1"},
		Ports: []discovery.Port{{Name: portName, Port: port, TargetPort: target}}}
}

// opsControl is an operator's control-API client, with a certificate of
// the lab's CA, to cluster's gateway; closed when the test ends.
func opsControl(t *testing.T, l *lab.Lab, cluster string) *state.ControlClient {
	t.Helper()
	c, err := l.Operator(l.Gateway(cluster).ControlAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
