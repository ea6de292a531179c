//go:build bench

package catalog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/straitmesh/strait/internal/benchreport"
)

// pool starts n catalogs on loopback with the lan profile and encryption,
// joined through the first, and waits until every one knows every other
// with its services.
func pool(t *testing.T, n int, profile string) []*Catalog {
	t.Helper()
	cats := make([]*Catalog, n)
	var seed string
	ca := newTestCA(t)
	for i := range n {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.Bind, cfg.Key, cfg.Profile = fmt.Sprintf("gw-%03d", i), "127.0.0.1:0", testKey, profile
		if seed != "" {
			cfg.Join = []string{seed}
		}
		cluster, region := fmt.Sprintf("c%03d", i), fmt.Sprintf("r%d", i%4)
		c, err := New(cfg, Self{Cluster: cluster, Region: region, DataAddr: "127.0.0.1:1"},
			[]Service{svc("echo", 2), svc(fmt.Sprintf("only-%03d", i), 1)},
			Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Signing: ca.signing(region, cluster)})
		if err != nil {
			t.Fatal(err)
		}
		cats[i] = c
		if seed == "" {
			seed = c.GossipAddr()
		}
		// Gateways come up the way a rollout brings them: a batch at a
		// time, each batch admitted before the next starts.
		if (i+1)%16 == 0 {
			wait := time.Now()
			for cats[0].Members() < i+1 && time.Since(wait) < time.Minute {
				time.Sleep(20 * time.Millisecond)
			}
			if os.Getenv("STRAIT_BENCH_DEBUG") != "" {
				t.Logf("batch to %d: seed sees %d after %s, dead events %v", i+1, cats[0].Members(), time.Since(wait).Round(time.Millisecond),
					sumCounter(cats[:i+1], func(m *catalogMetrics) prometheus.Collector { return m.deadEvents }))
			}
		}
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, c := range cats {
			wg.Add(1)
			go func() { defer wg.Done(); c.Kill() }()
		}
		wg.Wait()
	})
	deadline := time.Now().Add(5 * time.Minute)
	if s := os.Getenv("STRAIT_BENCH_POOL_WAIT"); s != "" {
		d, _ := time.ParseDuration(s)
		deadline = time.Now().Add(d)
	}
	for {
		ok := 0
		for _, c := range cats {
			s := c.Snapshot()
			alive := 0
			for _, v := range s.Clusters {
				if v.Reachable && len(v.Services) == 2 {
					alive++
				}
			}
			if alive == n {
				ok++
			}
		}
		if ok == n {
			return cats
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool of %d did not converge: %d complete", n, ok)
		}
		if os.Getenv("STRAIT_BENCH_DEBUG") != "" && time.Now().Second()%5 == 0 {
			minAlive, maxAlive, members := n, 0, 0
			for _, c := range cats {
				alive := 0
				for _, v := range c.Snapshot().Clusters {
					if v.Reachable && len(v.Services) == 2 {
						alive++
					}
				}
				minAlive, maxAlive = min(minAlive, alive), max(maxAlive, alive)
				members += c.Members()
			}
			t.Logf("complete %d, alive seen %d..%d, avg members %d, dead events %v", ok, minAlive, maxAlive, members/n,
				sumCounter(cats, func(m *catalogMetrics) prometheus.Collector { return m.deadEvents }))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAll returns, for every catalog but skip, how long after start cond
// first held, waiting on each catalog's watch channel.
func waitAll(t *testing.T, cats []*Catalog, skip map[int]bool, start time.Time, cond func(*Snapshot) bool) []time.Duration {
	t.Helper()
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	for i, c := range cats {
		if skip[i] {
			continue
		}
		ch, stop := c.Watch()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			deadline := time.After(30 * time.Second)
			for !cond(c.Snapshot()) {
				select {
				case <-ch:
				case <-deadline:
					t.Errorf("%s never saw the change", c.Name())
					return
				}
			}
			d := time.Since(start)
			mu.Lock()
			out = append(out, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

func sumCounter(cats []*Catalog, pick func(*catalogMetrics) prometheus.Collector) float64 {
	var s float64
	for _, c := range cats {
		s += testutil.ToFloat64(pick(c.metrics))
	}
	return s
}

// converge changes one service's health at one gateway, several times, and
// records when each other gateway sees each change.
func converge(t *testing.T, n int, profile, suffix string) {
	cats := pool(t, n, profile)
	var all []time.Duration
	var updateBytes float64
	const rounds = 10
	for round := range rounds {
		src := (round * 7) % n
		healthy := 1 // every source starts at 2: a real change each round
		if round == 3 {
			time.Sleep(2 * time.Second) // quiet: no earlier change still in flight
		}
		before := sumCounter(cats, func(m *catalogMetrics) prometheus.Collector { return m.deltaBytes })
		start := time.Now()
		cats[src].SetServices([]Service{svc("echo", healthy), svc(fmt.Sprintf("only-%03d", src), 1)})
		node := cats[src].Name()
		got := waitAll(t, cats, map[int]bool{src: true}, start, func(s *Snapshot) bool {
			v := view(s, node)
			if v == nil {
				return false
			}
			sv, ok := v.Service("demo", "echo")
			return ok && sv.Healthy == healthy
		})
		all = append(all, got...)
		if round == 3 {
			time.Sleep(2 * time.Second) // let gossip retransmissions of the change finish
			updateBytes = sumCounter(cats, func(m *catalogMetrics) prometheus.Collector { return m.deltaBytes }) - before
			if os.Getenv("STRAIT_BENCH_DEBUG") != "" {
				for _, c := range cats {
					if b := testutil.ToFloat64(c.metrics.deltaBytes); b > 0 {
						t.Logf("%s delta bytes %v deltas %v", c.Name(), b, testutil.ToFloat64(c.metrics.deltas))
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	benchreport.Print("catalog_converge_p50_ms"+suffix, benchreport.Ms(quantile(all, 0.50)), "ms")
	benchreport.Print("catalog_converge_p99_ms"+suffix, benchreport.Ms(quantile(all, 0.99)), "ms")
	benchreport.Print("catalog_converge_max_ms"+suffix, benchreport.Ms(all[len(all)-1]), "ms")
	if suffix == "" {
		benchreport.Print("catalog_update_bytes", updateBytes, "bytes")
	}
}

func TestBenchCatalogConverge64(t *testing.T) { converge(t, 64, "lan", "") }

// At 256 gateways in one process on two cores, the lan profile's probe
// rate (every gateway probes five times a second) saturates the machine,
// so the pool is measured with the wan profile, whose failure detector
// probes once a second. Change propagation does not depend on probing:
// it is the same direct sends in both profiles.
func TestBenchCatalogConverge256(t *testing.T) { converge(t, 256, "wan", "_n256") }

func TestBenchCatalogFailureDetect(t *testing.T) {
	const n = 64
	cats := pool(t, n, "lan")
	var worst []time.Duration
	killed := map[int]bool{}
	for round := range 3 {
		victim := n - 1 - round*5
		killed[victim] = true
		node := cats[victim].Name()
		start := time.Now()
		cats[victim].Kill()
		got := waitAll(t, cats, killed, start, func(s *Snapshot) bool {
			v := view(s, node)
			return v != nil && !v.Reachable
		})
		// Everyone else but the gateways already killed in earlier rounds.
		worst = append(worst, got[len(got)-1])
		time.Sleep(500 * time.Millisecond)
	}
	sort.Slice(worst, func(i, j int) bool { return worst[i] < worst[j] })
	benchreport.Print("catalog_failure_detect_ms", benchreport.Ms(worst[len(worst)/2]), "ms")
	benchreport.Print("catalog_failure_detect_max_ms", benchreport.Ms(worst[len(worst)-1]), "ms")
}

// busyCPU keeps every core busy with loopback traffic until ctx ends.
func busyCPU(ctx context.Context, t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	for range runtime.NumCPU() {
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			for ctx.Err() == nil {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

func TestBenchCatalogFalseDead(t *testing.T) {
	const n = 64
	dur := 60 * time.Second
	if s := os.Getenv("STRAIT_BENCH_FALSE_DEAD_SECONDS"); s != "" {
		v, _ := strconv.Atoi(s)
		dur = time.Duration(v) * time.Second
	}
	cats := pool(t, n, "lan")
	before := sumCounter(cats, func(m *catalogMetrics) prometheus.Collector { return m.deadEvents })
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	busyCPU(ctx, t)
	<-ctx.Done()
	after := sumCounter(cats, func(m *catalogMetrics) prometheus.Collector { return m.deadEvents })
	benchreport.Print("catalog_false_dead", after-before, "members")
}

// TestBenchCatalogJoinSync: a gateway joins a federation of 100 clusters
// with 10,000 services each and must learn the whole catalog.
func TestBenchCatalogJoinSync(t *testing.T) {
	const clusters, perCluster = 100, 10000
	ca := newTestCA(t)
	seedCfg := DefaultConfig()
	seedCfg.NodeName, seedCfg.Bind, seedCfg.Key = "seed", "127.0.0.1:0", testKey
	seed, err := New(seedCfg, Self{Cluster: "seed", Region: "r0", DataAddr: "127.0.0.1:1"}, nil,
		Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Signing: ca.signing("r0", "seed")})
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Kill()
	labels := map[string]string{"app.kubernetes.io/part-of": "shop"}
	for c := range clusters {
		wn := &wireNode{nodeHeader: nodeHeader{Node: fmt.Sprintf("gw-%03d", c), Cluster: fmt.Sprintf("c%03d", c), Region: fmt.Sprintf("r%d", c%5),
			Zone: "z1", Gateway: fmt.Sprintf("10.0.%d.1:15443", c), Version: 1}}
		for s := range perCluster {
			wn.Records = append(wn.Records, &record{Service: Service{Namespace: fmt.Sprintf("ns-%02d", s%50), Name: fmt.Sprintf("svc-%05d", s),
				Ports: []Port{{Name: "http", Port: 8080}}, Labels: labels, Healthy: 3, Total: 3}, Version: uint64(1000 + s)})
		}
		sg, err := newSigner(ca.signing(wn.Region, wn.Cluster), Self{Cluster: wn.Cluster, Region: wn.Region})
		if err != nil {
			t.Fatal(err)
		}
		seed.merge([]*wireNode{forge(t, sg, wn.nodeHeader, wn.Records...)}, false)
	}
	state := (*delegate)(seed).LocalState(true)
	benchreport.Print("catalog_state_mib_n100x10000", float64(len(state))/(1<<20), "MiB")

	runtime.GC()
	debug.FreeOSMemory()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)

	cfg := DefaultConfig()
	cfg.NodeName, cfg.Bind, cfg.Key = "newcomer", "127.0.0.1:0", testKey
	start := time.Now()
	nc, err := New(cfg, Self{Cluster: "new", Region: "r0", DataAddr: "127.0.0.1:1"}, nil,
		Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Signing: ca.signing("r0", "new")})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Kill()
	if _, err := nc.Join([]string{seed.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	ch, stop := nc.Watch()
	defer stop()
	deadline := time.After(2 * time.Minute)
	complete := func() bool {
		total := 0
		for _, v := range nc.Snapshot().Clusters {
			total += len(v.Services)
		}
		return total == clusters*perCluster
	}
	for !complete() {
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("newcomer did not learn the whole catalog in 2 minutes")
		}
	}
	took := time.Since(start)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	benchreport.Print("catalog_join_sync_ms", benchreport.Ms(took), "ms")
	benchreport.Print("catalog_heap_mib", float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/(1<<20), "MiB")
}

// TestBenchCatalogSignVerify: the owner's cost of signing one entry (two
// services, the pool's entries) plus a receiver's cost of checking it
// (digest, cached certificate, signature).
func TestBenchCatalogSignVerify(t *testing.T) {
	ca := newTestCA(t)
	s := ca.signing("r0", "c0")
	sg, err := newSigner(s, Self{Cluster: "c0", Region: "r0"})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(s)
	now := time.Now()
	hdr := nodeHeader{Node: "gw-000", Cluster: "c0", Region: "r0", Gateway: "127.0.0.1:1", Version: 1}
	const n = 2000
	start := time.Now()
	for i := range n {
		set := map[string]*record{
			"demo/echo":     {Service: svc("echo", 2), Version: uint64(i)},
			"demo/only-000": {Service: svc("only-000", 1), Version: uint64(i)},
		}
		h := hdr
		h.Version = uint64(i + 1)
		k, err := sg.key()
		if err != nil {
			t.Fatal(err)
		}
		if err := k.signEntry(&h, set); err != nil {
			t.Fatal(err)
		}
		if entryDigest(set) != h.Digest {
			t.Fatal("digest")
		}
		if reason := v.verifyEntry(&h, now); reason != "" {
			t.Fatal(reason)
		}
	}
	benchreport.Print("catalog_sign_verify_us", float64(time.Since(start).Microseconds())/n, "us")
}
