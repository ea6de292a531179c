package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/fault"
	"github.com/straitmesh/strait/lab"
)

const faultAuthority = "profile.demo.svc.clusterset.local:8080"

// faultLab is three clusters with fault mode on: a's workloads reach
// demo/profile, served in b (a's region, so preferred) and c.
func faultLab(t *testing.T) *lab.Lab {
	t.Helper()
	pb := startDemo(t, "demo/profile", "b", "eu-central", nil)
	pc := startDemo(t, "demo/profile", "c", "us-east", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-central"},
			{Name: "b", Region: "eu-central", Services: []discovery.Service{pb}},
			{Name: "c", Region: "us-east", Services: []discovery.Service{pc}},
		},
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Health:   gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond},
		Tune: func(_ string, cfg *gateway.Config) {
			cfg.Faults = fault.Config{Enabled: true, MaxLease: time.Minute}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// servedBy sends one request to faultAuthority through the CONNECT port
// at proxy and returns the cluster that answered and how long it took.
func servedBy(proxy string) (string, time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", proxy, 2*time.Second)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(4 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", faultAuthority, faultAuthority)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("CONNECT: %s", resp.Status)
	}
	fmt.Fprintf(c, "GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", faultAuthority)
	inner, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", 0, err
	}
	defer inner.Body.Close()
	var r lab.Reply
	if err := json.NewDecoder(inner.Body).Decode(&r); err != nil {
		return "", 0, err
	}
	return r.Cluster, time.Since(start), nil
}

// waitServedBy sends requests until one is served by want, within limit.
func waitServedBy(t *testing.T, proxy, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for i := 0; i < 200; i++ {
		got, _, err := servedBy(proxy)
		if err == nil && got == want {
			return
		}
		last = fmt.Sprintf("%q, %v", got, err)
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not served by %s within %s; last: %s", want, limit, last)
}

// adminDo sends one request to a lab gateway's admin API (loopback, no
// token) and returns the status and body.
func adminDo(t *testing.T, g *gateway.Gateway, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+g.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func inject(t *testing.T, g *gateway.Gateway, body string) {
	t.Helper()
	if code, b := adminDo(t, g, "POST", "/v1/faults", body); code != 200 {
		t.Fatalf("inject %s: %d %s", body, code, b)
	}
}

func undo(t *testing.T, g *gateway.Gateway, id string) {
	t.Helper()
	if code, b := adminDo(t, g, "DELETE", "/v1/faults/"+url.PathEscape(id), ""); code != 200 {
		t.Fatalf("undo %s: %d %s", id, code, b)
	}
}

// stateOf is how g's catalog sees cluster.
func stateOf(g *gateway.Gateway, cluster string) string {
	for _, c := range g.Catalog().Snapshot().Clusters {
		if c.Cluster == cluster {
			return c.State
		}
	}
	return ""
}

func waitState(t *testing.T, g *gateway.Gateway, cluster, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		got := stateOf(g, cluster)
		if got == want {
			return
		}
		if i > 1000 || time.Now().After(deadline) {
			t.Fatalf("sees %s %q after %s, want %q", cluster, got, limit, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultKillFailsOverAndComesBack: a kill injected through the admin
// API of the preferred cluster's gateway moves a's traffic to the other
// cluster and makes the federation see it dead; undone, the gateway is
// seen alive again and takes the traffic back.
func TestFaultKillFailsOverAndComesBack(t *testing.T) {
	l := faultLab(t)
	a, b := l.Gateway("a"), l.Gateway("b")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)

	inject(t, b, `{"id":"lose-a-cluster/kill-b","kind":"kill","lease":"30s"}`)
	if code, body := adminDo(t, b, "GET", "/readyz", ""); code != 503 || !strings.Contains(body, "lose-a-cluster/kill-b") {
		t.Fatalf("readyz of the killed gateway: %d %q", code, body)
	}
	waitServedBy(t, a.ConnectAddr(), "c", 5*time.Second)
	if c, err := net.DialTimeout("tcp", b.DataAddr(), time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("the killed gateway's data port answered")
		}
		c.Close()
	}
	waitState(t, a, "b", "dead", 15*time.Second)

	undo(t, b, "lose-a-cluster/kill-b")
	waitState(t, a, "b", "alive", 15*time.Second)
	waitServedBy(t, a.ConnectAddr(), "b", 15*time.Second)
	if code, body := adminDo(t, b, "GET", "/readyz", ""); code != 200 {
		t.Fatalf("readyz after undo: %d %q", code, body)
	}
}

// TestFaultBlackholePeers: b blackholes a (peers: [a]): a's traffic
// moves to c, while b's own workloads still reach b; undone, a's traffic
// comes back to b.
func TestFaultBlackholePeers(t *testing.T) {
	l := faultLab(t)
	a, b := l.Gateway("a"), l.Gateway("b")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)

	inject(t, b, `{"id":"cut-a","kind":"blackhole","peers":["a"],"lease":"30s"}`)
	waitServedBy(t, a.ConnectAddr(), "c", 6*time.Second)
	if got, _, err := servedBy(b.ConnectAddr()); err != nil || got != "b" {
		t.Fatalf("b's own workloads under the blackhole: %q, %v", got, err)
	}
	// c is not in the blackhole: it still reaches b.
	if got, _, err := servedBy(l.Gateway("c").ConnectAddr()); err != nil || got != "c" {
		t.Fatalf("c's workloads: %q, %v", got, err)
	}
	undo(t, b, "cut-a")
	waitServedBy(t, a.ConnectAddr(), "b", 15*time.Second)
}

// TestFaultLatencyAddsDelay: latency on b toward a (200ms) shows in
// what a's workloads wait for b's answers, and ends with the fault.
func TestFaultLatencyAddsDelay(t *testing.T) {
	l := faultLab(t)
	a, b := l.Gateway("a"), l.Gateway("b")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)
	median := func() time.Duration {
		var ds []time.Duration
		for i := 0; i < 5; i++ {
			got, d, err := servedBy(a.ConnectAddr())
			if err != nil || got != "b" {
				t.Fatalf("request %d: served by %q, %v", i, got, err)
			}
			ds = append(ds, d)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	base := median()
	inject(t, b, `{"id":"slow-a","kind":"latency","peers":["a"],"delay":"200ms","jitter":"10ms","lease":"30s"}`)
	slow := median()
	if slow-base < 180*time.Millisecond {
		t.Fatalf("median %s under latency, %s without: want at least 190ms more", slow, base)
	}
	undo(t, b, "slow-a")
	if after := median(); after-base > 150*time.Millisecond {
		t.Fatalf("median %s after undo, %s before the fault", after, base)
	}
}

// TestFaultLeaseExpiryUndoes: a kill whose lease is not renewed ends by
// itself: the gateway is ready and takes a's traffic again.
func TestFaultLeaseExpiryUndoes(t *testing.T) {
	l := faultLab(t)
	a, b := l.Gateway("a"), l.Gateway("b")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)
	inject(t, b, `{"id":"short","kind":"kill","lease":"1500ms"}`)
	if code, _ := adminDo(t, b, "GET", "/readyz", ""); code != 503 {
		t.Fatalf("readyz under kill: %d", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		code, body := adminDo(t, b, "GET", "/v1/faults", "")
		if code == 200 && strings.TrimSpace(body) == "[]" {
			break
		}
		if i > 100 || time.Now().After(deadline) {
			t.Fatalf("fault still listed 5s after a 1.5s lease: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Undone, b joins the federation again before it is ready.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := adminDo(t, b, "GET", "/readyz", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz 10s after the lease ran out: %d %q", code, body)
		}
	}
	waitServedBy(t, a.ConnectAddr(), "b", 15*time.Second)
}

// TestFaultPartitionFromTheClientSide: a partitions itself from b (peers
// [b]): its own dials and tunnels to b are held, so its traffic moves to
// c; undone, it comes back to b.
func TestFaultPartitionFromTheClientSide(t *testing.T) {
	l := faultLab(t)
	a := l.Gateway("a")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)
	inject(t, a, `{"id":"split","kind":"partition","peers":["b"],"lease":"30s"}`)
	waitServedBy(t, a.ConnectAddr(), "c", 6*time.Second)
	if code, body := adminDo(t, a, "GET", "/readyz", ""); code != 200 {
		t.Fatalf("a partition leaves the gateway ready: %d %q", code, body)
	}
	undo(t, a, "split")
	waitServedBy(t, a.ConnectAddr(), "b", 15*time.Second)
}

// TestFaultDrainAndBack: a drain fault makes b not ready and moves a's
// traffic to c without the process exiting; undone, b is ready and
// takes the traffic back.
func TestFaultDrainAndBack(t *testing.T) {
	l := faultLab(t)
	a, b := l.Gateway("a"), l.Gateway("b")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)
	inject(t, b, `{"id":"roll/b","kind":"drain","lease":"30s"}`)
	if code, body := adminDo(t, b, "GET", "/readyz", ""); code != 503 || !strings.Contains(body, "roll/b") {
		t.Fatalf("readyz under drain: %d %q", code, body)
	}
	waitServedBy(t, a.ConnectAddr(), "c", 6*time.Second)
	undo(t, b, "roll/b")
	if code, body := adminDo(t, b, "GET", "/readyz", ""); code != 200 {
		t.Fatalf("readyz after the drain: %d %q", code, body)
	}
	waitServedBy(t, a.ConnectAddr(), "b", 15*time.Second)
}

// TestFaultFreezeHoldsAndResumes: under freeze b accepts and holds; a's
// traffic moves to c; undone, b serves again.
func TestFaultFreezeHoldsAndResumes(t *testing.T) {
	l := faultLab(t)
	a, b := l.Gateway("a"), l.Gateway("b")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)
	inject(t, b, `{"id":"freeze-b","kind":"freeze","lease":"30s"}`)
	c, err := net.DialTimeout("tcp", b.ConnectAddr(), time.Second)
	if err != nil {
		t.Fatalf("a frozen gateway still accepts: %v", err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", faultAuthority, faultAuthority)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a frozen gateway answered: %d, %v", n, err)
	}
	c.Close()
	waitServedBy(t, a.ConnectAddr(), "c", 6*time.Second)
	undo(t, b, "freeze-b")
	waitServedBy(t, a.ConnectAddr(), "b", 15*time.Second)
}

// TestFaultKillTakesTheRaftLeaderDown: a kill on the gateway that leads
// the routing state cuts its Raft traffic both ways, so the other voters
// elect another leader; undone, it is back as a follower of that one.
func TestFaultKillTakesTheRaftLeaderDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{State: true, StateStaleAfter: time.Second, Clusters: []lab.ClusterSpec{
		{Name: "a", Region: "eu-west", Voter: true},
		{Name: "b", Region: "eu-central", Voter: true},
		{Name: "c", Region: "us-east", Voter: true},
	}, Tune: func(_ string, cfg *gateway.Config) {
		cfg.Faults = fault.Config{Enabled: true, MaxLease: time.Minute}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.WaitState(ctx); err != nil {
		t.Fatal(err)
	}
	leader := func(except string) string {
		for _, name := range l.Clusters() {
			if name != except && l.Gateway(name).State().Health().Role == "Leader" {
				return name
			}
		}
		return ""
	}
	old := ""
	for i := 0; i < 100 && old == ""; i++ {
		if old = leader(""); old == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if old == "" {
		t.Fatal("no leader")
	}
	inject(t, l.Gateway(old), `{"id":"kill-leader","kind":"kill","lease":"30s"}`)
	next := ""
	for i := 0; i < 150 && next == ""; i++ {
		if next = leader(old); next == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if next == "" {
		t.Fatalf("no other leader 15s after killing %s", old)
	}
	undo(t, l.Gateway(old), "kill-leader")
	for i := 0; ; i++ {
		h := l.Gateway(old).State().Health()
		if h.Role == "Follower" && h.Leader != "" {
			break
		}
		if i > 150 {
			t.Fatalf("%s after the kill: %+v", old, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFaultModeLeavesNothingBehind: a lab whose gateways had faults of
// every kind by peer in force (queued writes, held connections, gossip
// delayed) leaves no goroutine behind once it is closed, the faults
// still in force included.
func TestFaultModeLeavesNothingBehind(t *testing.T) {
	pb := startDemo(t, "demo/profile", "b", "eu-central", nil)
	pc := startDemo(t, "demo/profile", "c", "us-east", nil)
	runtime.GC()
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-central"},
			{Name: "b", Region: "eu-central", Services: []discovery.Service{pb}},
			{Name: "c", Region: "us-east", Services: []discovery.Service{pc}},
		},
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Tune: func(_ string, cfg *gateway.Config) {
			cfg.Faults = fault.Config{Enabled: true, MaxLease: time.Minute}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.Gateway("a"), l.Gateway("b")
	waitServedBy(t, a.ConnectAddr(), "b", 5*time.Second)
	inject(t, b, `{"id":"slow","kind":"latency","peers":["a"],"delay":"20ms","lease":"30s"}`)
	inject(t, b, `{"id":"lossy","kind":"loss","peers":["a"],"percent":50,"lease":"30s"}`)
	for i := 0; i < 3; i++ {
		if _, _, err := servedBy(a.ConnectAddr()); err != nil {
			t.Fatal(err)
		}
	}
	inject(t, l.Gateway("c"), `{"id":"hole","kind":"blackhole","lease":"30s"}`)
	inject(t, a, `{"id":"freeze","kind":"freeze","lease":"30s"}`)
	if c, err := net.DialTimeout("tcp", a.ConnectAddr(), time.Second); err == nil {
		defer c.Close() // held by the freeze until the lab closes
	}
	l.Close()
	var now int
	for i := 0; i < 100; i++ {
		runtime.GC()
		if now = runtime.NumGoroutine(); now <= base {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines after the lab closed, %d before it started\n%s", now, base, buf[:runtime.Stack(buf, true)])
}
