package lab_test

import (
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/straitmesh/strait/lab"
)

// tracedSpec gives every gateway of a lab its own tracer provider, with
// an in-memory exporter and the cluster in the provider's resource.
func tracedSpec() (lab.Spec, func() map[string]tracetest.SpanStubs) {
	var mu sync.Mutex
	exps := map[string]*tracetest.InMemoryExporter{}
	spec := lab.Spec{TracerProvider: func(cluster string) trace.TracerProvider {
		exp := tracetest.NewInMemoryExporter()
		mu.Lock()
		exps[cluster] = exp
		mu.Unlock()
		return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("strait.cluster", cluster))))
	}}
	return spec, func() map[string]tracetest.SpanStubs {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]tracetest.SpanStubs{}
		for c, e := range exps {
			out[c] = e.GetSpans()
		}
		return out
	}
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func resourceCluster(s tracetest.SpanStub) string {
	v, _ := s.Resource.Set().Value("strait.cluster")
	return v.AsString()
}

// TestTraceAcrossGateways: one request from eu-central-1 to demo/ledger
// (which only the eu-west clusters run), sent with the client's own
// traceparent, yields one trace: http.request, plan, attempt and
// tunnel.stream on eu-central-1, inbound on the eu-west gateway that
// served it as a child of the tunnel.stream, and the service sees a
// traceparent naming the http.request span. An HTTP/2 request after it
// is the same, or, when it goes on the stream the first one left, has
// http.request and plan only. A TLS connection through the
// same import port, which the gateway carries as bytes, is one more
// trace, rooted at a flow span.
func TestTraceAcrossGateways(t *testing.T) {
	spec, spans := tracedSpec()
	_, d, byName := startDev(t, spec)
	euc := byName["eu-central-1"]
	ledger := euc.Imports["demo/ledger:8080"]

	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest(http.MethodGet, "http://"+ledger+"/headers", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var r lab.Reply
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || r.Region != "eu-west" {
		t.Fatalf("ledger from eu-central-1: %s, %+v, %v", resp.Status, r, err)
	}

	// The same over HTTP/2 (h2c, prior knowledge).
	const h2Trace = "0af7651916cd43dd8448eb211c80319c"
	req2, _ := http.NewRequest(http.MethodGet, "http://"+ledger+"/headers", nil)
	req2.Header.Set("Traceparent", "00-"+h2Trace+"-b7ad6b7169203331-01")
	resp2, err := h2cClient().Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	var r2 lab.Reply
	err = json.NewDecoder(resp2.Body).Decode(&r2)
	resp2.Body.Close()
	if err != nil || resp2.ProtoMajor != 2 || r2.Region != "eu-west" {
		t.Fatalf("ledger over h2c from eu-central-1: %s %s, %+v, %v", resp2.Proto, resp2.Status, r2, err)
	}

	// TLS to the service through the import port: an L4 flow.
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "ledger.demo.svc.cluster.local", InsecureSkipVerify: true}}}
	tr := getJSON(t, tlsClient, "https://"+ledger+"/")
	if tr.Region != "eu-west" || !tr.TLS {
		t.Fatalf("ledger over TLS from eu-central-1: %+v", tr)
	}

	// The inbound span ends with its stream, which the gateway keeps for
	// the next request: stop the federation to end it.
	d.Close()

	all := spans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	traces := map[trace.TraceID][]string{}
	for cluster, ss := range all {
		for _, s := range ss {
			if got := resourceCluster(s); got != cluster {
				t.Errorf("span %s exported by %s names cluster %q", s.Name, cluster, got)
			}
			byID[s.SpanContext.SpanID()] = s
			traces[s.SpanContext.TraceID()] = append(traces[s.SpanContext.TraceID()], cluster+"/"+s.Name)
		}
	}
	if len(traces) != 3 {
		t.Fatalf("%d traces, want 3 (the HTTP/1.1 and HTTP/2 requests, the TLS flow): %v", len(traces), traces)
	}
	find := func(cluster, name string, id trace.TraceID) tracetest.SpanStub {
		t.Helper()
		for _, s := range all[cluster] {
			if s.Name == name && s.SpanContext.TraceID() == id {
				return s
			}
		}
		t.Fatalf("no span %s from %s in trace %s; traces %v", name, cluster, id, traces)
		return tracetest.SpanStub{}
	}
	parentOf := func(s tracetest.SpanStub) tracetest.SpanStub { return byID[s.Parent.SpanID()] }
	// hops checks plan, attempt and tunnel.stream under root on
	// eu-central-1 and inbound on the cluster that served, and returns it.
	hops := func(root tracetest.SpanStub) string {
		t.Helper()
		id := root.SpanContext.TraceID()
		plan := find("eu-central-1", "plan", id)
		if parentOf(plan).Name != root.Name || !slices.Contains(attr(plan, "strait.classes").AsStringSlice(), "pii-eu") ||
			attr(plan, "strait.outcome").AsString() != "allowed" || attr(plan, "strait.candidates").AsInt64() < 1 {
			t.Errorf("plan: parent %q, attributes %v", parentOf(plan).Name, plan.Attributes)
		}
		at := find("eu-central-1", "attempt", id)
		if parentOf(at).Name != root.Name || attr(at, "strait.result").AsString() != "ok" {
			t.Errorf("attempt: parent %q, attributes %v", parentOf(at).Name, at.Attributes)
		}
		served := attr(at, "strait.dest.cluster").AsString()
		ts := find("eu-central-1", "tunnel.stream", id)
		if parentOf(ts).Name != "attempt" || ts.SpanKind != trace.SpanKindClient || attr(ts, "strait.peer.cluster").AsString() != served {
			t.Errorf("tunnel.stream: parent %q, kind %v, attributes %v", parentOf(ts).Name, ts.SpanKind, ts.Attributes)
		}
		in := find(served, "inbound", id)
		if in.Parent.SpanID() != ts.SpanContext.SpanID() || !in.Parent.IsRemote() || in.SpanKind != trace.SpanKindServer ||
			attr(in, "strait.peer.cluster").AsString() != "eu-central-1" {
			t.Errorf("inbound: parent %v (want tunnel.stream %v, remote), attributes %v", in.Parent, ts.SpanContext.SpanID(), in.Attributes)
		}
		return served
	}

	for _, tc := range []struct {
		name, trace, parent string
		reply               lab.Reply
		stream              string
	}{
		{"HTTP/1.1", clientTrace, "00f067aa0ba902b7", r, "new"},
		// On the stream the first request left when the selector puts
		// its cluster first again ("kept"), else on a new one.
		{"HTTP/2", h2Trace, "b7ad6b7169203331", r2, ""},
	} {
		var id trace.TraceID
		copy(id[:], mustHex(t, tc.trace))
		hr := find("eu-central-1", "http.request", id)
		if hr.Parent.SpanID().String() != tc.parent || !hr.Parent.IsRemote() {
			t.Errorf("%s: http.request's parent %v, want the client's span", tc.name, hr.Parent)
		}
		if attr(hr, "http.request.method").AsString() != "GET" || attr(hr, "http.response.status_code").AsInt64() != 200 ||
			attr(hr, "strait.service").AsString() != "demo/ledger" || tc.stream != "" && attr(hr, "strait.stream").AsString() != tc.stream {
			t.Errorf("%s: http.request attributes %v", tc.name, hr.Attributes)
		}
		if attr(hr, "strait.stream").AsString() == "kept" {
			// No attempt, and the inbound span is the first request's.
			if plan := find("eu-central-1", "plan", id); parentOf(plan).Name != "http.request" || len(traces[id]) != 2 {
				t.Errorf("%s on a kept stream: spans %v", tc.name, traces[id])
			}
		} else if served := hops(hr); served != tc.reply.Cluster {
			t.Errorf("%s: the request's attempt went to %q, it was served by %s", tc.name, served, tc.reply.Cluster)
		}
		// The service's parent is the http.request span.
		if got, want := tc.reply.Headers.Get("Traceparent"), "00-"+tc.trace+"-"+hr.SpanContext.SpanID().String()+"-01"; got != want {
			t.Errorf("%s: service saw traceparent %q, want %q", tc.name, got, want)
		}
	}

	var flow tracetest.SpanStub
	for _, s := range all["eu-central-1"] {
		if s.Name == "flow" {
			flow = s
		}
	}
	if !flow.SpanContext.IsValid() || flow.Parent.IsValid() || attr(flow, "strait.entry").AsString() != "import" {
		t.Fatalf("flow span %+v", flow)
	}
	if served := hops(flow); served != tr.Cluster {
		t.Errorf("the TLS flow's attempt went to %q, it was served by %s", served, tr.Cluster)
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTracingOffRecordsNothing: with no tracer provider, a request
// crosses gateways with no trace context. eu-central-1 traces nothing
// while the eu-west gateways do: their inbound span for its request has
// no parent, so nothing went on the wire, and the service sees no
// traceparent, or the client's unchanged (the gateway neither adds nor
// replaces one).
func TestTracingOffRecordsNothing(t *testing.T) {
	on, spans := tracedSpec()
	spec := lab.Spec{TracerProvider: func(cluster string) trace.TracerProvider {
		if cluster == "eu-central-1" {
			return nil
		}
		return on.TracerProvider(cluster)
	}}
	_, d, byName := startDev(t, spec)
	euc := byName["eu-central-1"]
	client := &http.Client{Timeout: 10 * time.Second}
	r := getJSON(t, client, "http://"+euc.Imports["demo/ledger:8080"]+"/headers")
	if r.Region != "eu-west" || r.Headers.Get("Traceparent") != "" || r.Headers.Get("Tracestate") != "" {
		t.Errorf("untraced request: served in %s, service saw traceparent %q", r.Region, r.Headers.Get("Traceparent"))
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+euc.Imports["demo/ledger:8080"]+"/headers", nil)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req.Header.Set("Traceparent", tp)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rr lab.Reply
	json.NewDecoder(resp.Body).Decode(&rr)
	resp.Body.Close()
	if rr.Headers.Get("Traceparent") != tp {
		t.Errorf("client's traceparent reached the service as %q", rr.Headers.Get("Traceparent"))
	}
	d.Close()

	all := spans()
	if _, ok := all["eu-central-1"]; ok {
		t.Fatalf("eu-central-1 got a tracer provider")
	}
	inbound := 0
	for cluster, ss := range all {
		for _, s := range ss {
			if s.Name != "inbound" || attr(s, "strait.peer.cluster").AsString() != "eu-central-1" {
				continue
			}
			inbound++
			if s.Parent.IsValid() {
				t.Errorf("%s: inbound span from eu-central-1 has parent %v: a trace context crossed", cluster, s.Parent)
			}
		}
	}
	if inbound == 0 {
		t.Errorf("no inbound span from eu-central-1 on the traced eu-west gateways: %v", all)
	}
}
