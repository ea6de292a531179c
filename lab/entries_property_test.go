package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/lab"
)

var entriesSeed = flag.Uint64("entries.seed", 0, "seed of TestEntriesNeverLeakMarkedRequests (0: a random one, logged)")

// entriesPolicy: two header classes whose regions meet only in r3, the
// client's region; a value no matcher names is refused.
const entriesPolicy = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: entries}
spec:
  regions: [r1, r2, r3]
  classes:
    - name: eu
      allowedRegions: [r1, r3]
      match: {headers: [{name: x-data-residency, value: eu}]}
    - name: us
      allowedRegions: [r2, r3]
      match: {headers: [{name: x-data-residency, value: us}]}
  default: allow
  onUnknownValue: refuse
`

// The oracle's own reading of entriesPolicy and of the lab's exporters.
var (
	entriesAllowed = map[string][]string{"eu": {"r1", "r3"}, "us": {"r2", "r3"}}
	entriesRegion  = map[string]string{"b": "r2", "c": "r1", "d": "r1"}
	entryPaths     = []string{"proxy-h1", "proxy-h2c", "proxy-grpc", "connect-h1", "connect-h2c", "import-h1", "import-h2c", "import-grpc"}
)

type field struct{ name, value string }

// classifyFields is the oracle, written from docs/residency.md and not
// from the gateway's code: header names and values compare without case,
// a value is a comma list of items trimmed of spaces and tabs, and empty
// items do not count. It returns the marker value ("" when unmarked), or
// bad when the request must be refused 400: two values, or an unknown one.
func classifyFields(fields []field) (value string, bad bool) {
	seen := map[string]bool{}
	for _, f := range fields {
		if !strings.EqualFold(f.name, "x-data-residency") {
			continue
		}
		for item := range strings.SplitSeq(f.value, ",") {
			if v := strings.ToLower(strings.Trim(item, " \t")); v != "" {
				seen[v] = true
			}
		}
	}
	if len(seen) == 0 {
		return "", false
	}
	for v := range seen {
		value = v
	}
	_, known := entriesAllowed[value]
	return value, len(seen) > 1 || !known
}

// randomForm draws how a request in proto (h1, h2 or grpc) carries the
// marker. gRPC metadata must be printable, so only HTTP pads with a tab;
// HTTP/2 has no Connection field, so only HTTP/1.1 also names the marker
// hop-by-hop (it is meant for the gateway, which must still read it).
func randomForm(rng *rand.Rand, proto string) (string, []field) {
	const h = "X-Data-Residency"
	v, w := "eu", "us"
	if rng.IntN(2) == 0 {
		v, w = w, v
	}
	one := func(s string) []field { return []field{{h, s}} }
	pad, hop := one(" "+v+"\t"), []field{{h, v}, {"Connection", h}}
	if proto == "grpc" {
		pad = one(" " + v + " ")
	}
	if proto != "h1" {
		hop = one(v)
	}
	forms := []struct {
		name   string
		fields []field
	}{
		{"none", nil}, {"none", nil}, {"none", nil}, {"empty", one(" , ")},
		{"plain", one(v)}, {"upper", one(strings.ToUpper(v))}, {"padded", pad}, {"hop-by-hop", hop},
		{"list-same", one(v + ", " + v)}, {"empty-item", one(v + ", ,")},
		{"two-fields", []field{{h, v}, {h, v}}}, {"name-case", []field{{"x-DATA-residency", v}}},
		{"conflict", one(v + ", " + w)}, {"conflict-fields", []field{{h, v}, {h, strings.ToUpper(w)}}},
		{"unknown", one([]string{"apac", "e u", "europe"}[rng.IntN(3)])},
	}
	f := forms[rng.IntN(len(forms))]
	return f.name, f.fields
}

// outcome is how one request ended, whatever its entry.
type outcome struct {
	status          int    // HTTP status; for gRPC, the one its code stands for
	cluster, region string // who served it, as the service says (gRPC: as the gateway says)
	via             string // X-Strait-Cluster/X-Strait-Region
	detail          string // why it was refused
}

// TestEntriesNeverLeakMarkedRequests: random requests on every HTTP entry
// of a gateway (absolute-form, h2c and gRPC on the proxy port; CONNECT
// tunnels carrying HTTP/1.1 or h2c, marked on the CONNECT, inside or both;
// import ports with HTTP/1.1 keep-alive, h2c and gRPC), each with the
// marker in a random form, while exporters are cut off, healed and killed.
// An independent oracle judges every outcome: no marked request is ever
// served outside its regions. Replay a run with -entries.seed.
func TestEntriesNeverLeakMarkedRequests(t *testing.T) {
	seed := *entriesSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay: go test -race -run TestEntriesNeverLeakMarkedRequests ./lab/ -entries.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	l := entriesLab(t)
	d := newEntryDriver(t, l.Gateway("a"))
	defer d.close()
	f := &entryFaults{l: l, back: map[string]time.Time{}, killAt: 120 + rng.IntN(120)}

	cols := []string{"requests", "served", "400", "503", "other", "marked", "leaks"}
	count := map[string]map[string]int{}
	forms := map[string]int{}
	const n = 300
	deadline := time.Now().Add(35 * time.Second)
	done, failures := 0, 0
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		// Each request draws the same values whatever came before, so a
		// seed replays the same requests and faults.
		if err := f.step(i, rng); err != nil {
			t.Fatal(err)
		}
		path := entryPaths[rng.IntN(len(entryPaths))]
		svc := []string{"profile", "rpc"}[rng.IntN(2)]
		proto := map[string]string{"h1": "h1", "h2c": "h2", "grpc": "grpc"}[path[strings.IndexByte(path, '-')+1:]]
		if proto == "grpc" {
			svc = "rpc"
		}
		formName, inner := randomForm(rng, proto)
		_, outer := randomForm(rng, "h1") // for a tunnel this request opens
		if rng.IntN(2) == 0 {
			outer = nil
		}
		reuse := rng.IntN(4) > 0

		sentOuter, o, err := d.do(path, svc, inner, outer, reuse)
		done++
		value, bad := classifyFields(append(slices.Clone(sentOuter), inner...))
		msg := "no answer: " + fmt.Sprint(err)
		if err == nil {
			msg = f.verdict(value, bad, o)
		}
		c := count[path]
		if c == nil {
			c = map[string]int{}
			count[path] = c
		}
		c["requests"]++
		forms[formName]++
		switch {
		case o.status/100 == 2:
			c["served"]++
		case o.status == 400 || o.status == 503:
			c[fmt.Sprint(o.status)]++
		default:
			c["other"]++
		}
		if value != "" && !bad {
			c["marked"]++
		}
		if strings.HasPrefix(msg, "LEAK") {
			c["leaks"]++
		}
		if msg != "" {
			if failures++; failures <= 20 {
				if strings.HasPrefix(path, "connect") {
					path += fmt.Sprintf(" (CONNECT fields %v)", sentOuter)
				}
				t.Errorf("request %d via %s to %s, fields %v (%s), oracle: marker %q bad %v, faults %s: %s",
					i, path, svc, inner, formName, value, bad, f, msg)
			}
		}
	}

	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "entry\t%s\t\n", strings.Join(cols, "\t"))
	leaks := 0
	for _, p := range entryPaths {
		fmt.Fprint(tw, p)
		for _, col := range cols {
			fmt.Fprintf(tw, "\t%d", count[p][col])
		}
		fmt.Fprintln(tw, "\t")
		leaks += count[p]["leaks"]
		if count[p]["requests"] < 5 {
			t.Errorf("entry %s exercised %d times, want at least 5", p, count[p]["requests"])
		}
	}
	tw.Flush()
	t.Logf("%d of %d requests (seed %d), %d failed the oracle\nfaults %v\nforms %v\n%s", done, n, seed, failures, f.events, forms, b.String())
	if leaks > 0 {
		t.Errorf("%d marked requests served outside their regions (seed %d)", leaks, seed)
	}
}

// entriesLab: a (r3) imports demo/profile (http) and demo/rpc (grpc),
// which b (r2), c and d (r1) export. Ejections are short, so that a
// healed cluster is tried again within entryGrace.
func entriesLab(t *testing.T) *lab.Lab {
	var clusters []lab.ClusterSpec
	for _, name := range []string{"b", "c", "d"} {
		r := entriesRegion[name]
		clusters = append(clusters, lab.ClusterSpec{Name: name, Region: r, Services: []discovery.Service{
			httpService(t, "demo/profile", name, r, "http"), httpService(t, "demo/rpc", name, r, "grpc")}})
	}
	clusters = append(clusters, lab.ClusterSpec{Name: "a", Region: "r3", Imports: []gateway.Import{
		{Service: "demo/profile", Port: 8080, Listen: "127.0.0.1:0"}, {Service: "demo/rpc", Port: 8080, Listen: "127.0.0.1:0"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{Clusters: clusters, Policy: []byte(entriesPolicy),
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 4 * time.Second, Drain: time.Second},
		Health:   gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond},
		Outlier:  route.OutlierConfig{ConsecutiveFailures: 2, BaseEjection: 500 * time.Millisecond, MaxEjection: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// entryFaults cuts one exporter at a time off from a and heals it, and
// kills d once; it tells the oracle which clusters count as down.
type entryFaults struct {
	l              *lab.Lab
	cut, killed    string
	healAt, killAt int
	back           map[string]time.Time // when each exporter was last healed
	events         []string
}

// entryGrace is how long a healed cluster still counts as down: a's
// tunnels and ejections need a moment to come back.
const entryGrace = 3 * time.Second

func (f *entryFaults) step(i int, rng *rand.Rand) error {
	roll, victim, length := rng.IntN(35), []string{"b", "c", "d"}[rng.IntN(3)], 4+rng.IntN(10)
	event := ""
	var err error
	switch {
	case f.cut != "" && i >= f.healAt:
		event, err = "heal a->"+f.cut, f.l.Link("a", f.cut).Heal()
		f.back[f.cut], f.cut = time.Now(), ""
	case i == f.killAt:
		event, err = "kill d", f.l.KillGateway("d")
		f.killed = "d"
	case f.cut == "" && roll == 0 && victim != f.killed:
		event, err = "cut a->"+victim, f.l.Link("a", victim).Partition()
		f.cut, f.healAt = victim, i+length
	}
	if event != "" {
		f.events = append(f.events, fmt.Sprintf("%d: %s", i, event))
	}
	return err
}

func (f *entryFaults) down(c string) bool {
	return c == f.cut || c == f.killed || time.Since(f.back[c]) < entryGrace
}

func (f *entryFaults) String() string { return fmt.Sprintf("{cut %q killed %q}", f.cut, f.killed) }

// verdict judges an outcome; "" when it is right. A marked request served
// outside its regions is a LEAK.
func (f *entryFaults) verdict(value string, bad bool, o outcome) string {
	served := o.status/100 == 2
	// 503 is right only when every exporter that may serve the request
	// is down, or back too recently to be found again.
	allDown := true
	for c, r := range entriesRegion {
		if value == "" || slices.Contains(entriesAllowed[value], r) {
			allDown = allDown && f.down(c)
		}
	}
	switch {
	case served && bad:
		return fmt.Sprintf("served by %s in %s, want 400", o.cluster, o.region)
	case served && value != "" && !slices.Contains(entriesAllowed[value], o.region):
		return fmt.Sprintf("LEAK: served by %s in %s, outside %v", o.cluster, o.region, entriesAllowed[value])
	case served && (entriesRegion[o.cluster] != o.region || o.via != o.cluster+"/"+o.region):
		return fmt.Sprintf("served by %s in %s, but the gateway says %s", o.cluster, o.region, o.via)
	case served, bad && o.status == 400, !bad && o.status == 503 && allDown:
		return ""
	case bad:
		return fmt.Sprintf("status %d (%s), want 400", o.status, o.detail)
	}
	return fmt.Sprintf("status %d (%s), want it served", o.status, o.detail)
}

// entryDriver sends requests through gateway a's entries. HTTP/1.1
// connections and CONNECT tunnels are kept between requests, and reused
// unless a request says otherwise; h2c and gRPC clients keep theirs.
type entryDriver struct {
	proxy                 string
	imports               map[string]string  // service -> a's import port
	conns                 map[string]*h1Conn // by entry and service
	importH2, proxyH2     *http.Transport
	tunnelH2              *http.Transport // dials the tunnel in its context
	grpcConns             []*grpc.ClientConn
	grpcImport, grpcProxy healthpb.HealthClient
}

// h1Conn is a client connection read through its buffer; a tunnel keeps
// the fields of its CONNECT and, for h2c inside, its HTTP/2 connection.
type h1Conn struct {
	net.Conn
	br    *bufio.Reader
	outer []field
	h2    *http.ClientConn
}

func (c *h1Conn) Read(p []byte) (int, error) { return c.br.Read(p) }

type tunnelKey struct{}

func entryAuthority(svc string) string { return svc + ".demo.svc.clusterset.local:8080" }

func newEntryDriver(t *testing.T, a *gateway.Gateway) *entryDriver {
	d := &entryDriver{proxy: a.ConnectAddr(), conns: map[string]*h1Conn{},
		imports: map[string]string{"profile": a.ImportAddrs()["demo/profile:8080"], "rpc": a.ImportAddrs()["demo/rpc:8080"]}}
	var dialer net.Dialer
	h2c := func(dial func(ctx context.Context, addr string) (net.Conn, error)) *http.Transport {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		return &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }}
	}
	d.importH2 = h2c(func(ctx context.Context, addr string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) })
	d.proxyH2 = h2c(func(ctx context.Context, _ string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", d.proxy) })
	d.tunnelH2 = h2c(func(ctx context.Context, _ string) (net.Conn, error) { return ctx.Value(tunnelKey{}).(net.Conn), nil })
	health := func(addr string, opts ...grpc.DialOption) healthpb.HealthClient {
		cc, err := grpc.NewClient("passthrough:///"+addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		d.grpcConns = append(d.grpcConns, cc)
		return healthpb.NewHealthClient(cc)
	}
	d.grpcImport = health(d.imports["rpc"])
	d.grpcProxy = health(d.proxy, grpc.WithAuthority(entryAuthority("rpc")))
	return d
}

func (d *entryDriver) close() {
	for k := range d.conns {
		d.drop(k)
	}
	d.importH2.CloseIdleConnections()
	d.proxyH2.CloseIdleConnections()
	for _, cc := range d.grpcConns {
		cc.Close()
	}
}

// do sends one request with the fields inner on path to svc; a tunnel it
// opens carries outer on its CONNECT. It returns the fields of the
// CONNECT the request went through, if any.
func (d *entryDriver) do(path, svc string, inner, outer []field, reuse bool) (sent []field, o outcome, err error) {
	auth, key := entryAuthority(svc), path+"/"+svc
	get := func(target string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, auth)
		for _, f := range inner {
			fmt.Fprintf(&b, "%s: %s\r\n", f.name, f.value)
		}
		return b.String() + "\r\n"
	}
	switch path {
	case "proxy-h1", "import-h1":
		addr, target := d.proxy, "http://"+auth+"/"
		if path == "import-h1" {
			addr, target = d.imports[svc], "/"
		}
		c, _, err := d.open(key, addr, reuse)
		if err != nil {
			return nil, o, err
		}
		o, err := d.send1(key, c, get(target))
		return nil, o, err
	case "connect-h1", "connect-h2c":
		c, refused, err := d.tunnel(key, auth, outer, reuse)
		switch {
		case err != nil:
			return c.outer, o, err
		case refused != nil:
			return c.outer, *refused, nil
		case path == "connect-h1":
			o, err = d.send1(key, c, get("/"))
		default:
			if o, err = roundTrip2(c.h2, "http://"+auth+"/", inner); err != nil {
				d.drop(key)
			}
		}
		return c.outer, o, err
	case "proxy-h2c":
		o, err = roundTrip2(d.proxyH2, "http://"+auth+"/", inner)
	case "import-h2c":
		o, err = roundTrip2(d.importH2, "http://"+d.imports[svc]+"/", inner)
	case "import-grpc":
		o, err = checkHealth(d.grpcImport, inner)
	case "proxy-grpc":
		o, err = checkHealth(d.grpcProxy, inner)
	default:
		panic("unknown entry " + path)
	}
	return nil, o, err
}

// open returns the connection kept under key, or a new one to addr.
func (d *entryDriver) open(key, addr string, reuse bool) (c *h1Conn, fresh bool, err error) {
	if c := d.conns[key]; c != nil && reuse {
		return c, false, nil
	}
	d.drop(key)
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return &h1Conn{}, false, err
	}
	c = &h1Conn{Conn: nc, br: bufio.NewReader(nc)}
	d.conns[key] = c
	return c, true, nil
}

func (d *entryDriver) drop(key string) {
	if c := d.conns[key]; c != nil {
		if c.h2 != nil {
			c.h2.Close()
		}
		c.Close()
		delete(d.conns, key)
	}
}

// tunnel returns the tunnel kept under key, or opens one to auth whose
// CONNECT carries outer; refused is how a refused CONNECT ended.
func (d *entryDriver) tunnel(key, auth string, outer []field, reuse bool) (c *h1Conn, refused *outcome, err error) {
	c, fresh, err := d.open(key, d.proxy, reuse)
	if err != nil || !fresh {
		return c, nil, err
	}
	c.outer = outer
	c.SetDeadline(time.Now().Add(15 * time.Second))
	req := fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n", auth, auth)
	for _, f := range outer {
		req += fmt.Sprintf("%s: %s\r\n", f.name, f.value)
	}
	io.WriteString(c, req+"\r\n")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodConnect})
	switch {
	case err != nil:
		d.drop(key)
		return c, nil, fmt.Errorf("CONNECT: %w", err)
	case resp.StatusCode != http.StatusOK:
		o, err := readOutcome(resp)
		d.drop(key)
		return c, &o, err
	}
	c.SetDeadline(time.Time{})
	if strings.HasPrefix(key, "connect-h2c") {
		if c.h2, err = d.tunnelH2.NewClientConn(context.WithValue(context.Background(), tunnelKey{}, net.Conn(c)), "http", auth); err != nil {
			d.drop(key)
		}
	}
	return c, nil, err
}

// send1 writes one HTTP/1.1 request on c and reads the response; a
// connection the response (or an error) ends is dropped.
func (d *entryDriver) send1(key string, c *h1Conn, req string) (outcome, error) {
	c.SetDeadline(time.Now().Add(15 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, req); err != nil {
		d.drop(key)
		return outcome{}, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		d.drop(key)
		return outcome{}, err
	}
	o, err := readOutcome(resp)
	if err != nil || resp.Close {
		d.drop(key)
	}
	return o, err
}

// roundTrip2 sends one HTTP/2 request with the fields inner.
func roundTrip2(rt http.RoundTripper, url string, inner []field) (outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return outcome{}, err
	}
	for _, f := range inner {
		req.Header[f.name] = append(req.Header[f.name], f.value)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return outcome{}, err
	}
	if resp.ProtoMajor != 2 {
		resp.Body.Close()
		return outcome{}, fmt.Errorf("answered over %s", resp.Proto)
	}
	return readOutcome(resp)
}

// readOutcome reads a response; a 2xx one must be the demo service's reply.
func readOutcome(resp *http.Response) (outcome, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	o := outcome{status: resp.StatusCode, detail: resp.Header.Get("X-Strait-Reason"),
		via: resp.Header.Get("X-Strait-Cluster") + "/" + resp.Header.Get("X-Strait-Region")}
	if err == nil && o.status/100 == 2 {
		var r lab.Reply
		err = json.Unmarshal(body, &r)
		o.cluster, o.region = r.Cluster, r.Region
	}
	if err != nil {
		return o, fmt.Errorf("%s, body %q: %w", resp.Status, body, err)
	}
	return o, nil
}

// grpcStatuses are the HTTP statuses the gateway's gRPC refusals stand for.
var grpcStatuses = map[codes.Code]int{codes.InvalidArgument: 400, codes.PermissionDenied: 403, codes.Unimplemented: 404, codes.Unavailable: 503}

// checkHealth calls the demo service's gRPC health with inner as metadata.
func checkHealth(hc healthpb.HealthClient, inner []field) (outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, f := range inner {
		ctx = metadata.AppendToOutgoingContext(ctx, f.name, f.value)
	}
	var hdr metadata.MD
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
	if err != nil {
		st := status.Convert(err)
		if code, ok := grpcStatuses[st.Code()]; ok {
			return outcome{status: code, detail: st.Code().String() + ": " + st.Message()}, nil
		}
		return outcome{}, err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return outcome{}, fmt.Errorf("health %v", resp.Status)
	}
	first := func(k string) string { return strings.Join(hdr.Get(k), ",") }
	o := outcome{status: 200, cluster: first("x-strait-cluster"), region: first("x-strait-region")}
	o.via = o.cluster + "/" + o.region
	return o, nil
}
