package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
)

// tracingGateway is just enough of a gateway for its tracing helpers.
func tracingGateway(tp trace.TracerProvider) *Gateway {
	return &Gateway{cfg: Config{Cluster: "eu-central-1", Region: "eu-central"}, ctx: context.Background(), tracer: newTracer(tp)}
}

var (
	benchTarget = wire.Target{Namespace: "demo", Name: "ledger", Port: 8080}
	benchCand   = route.Candidate{Cluster: "eu-west-1", Region: "eu-west", Addr: "10.0.0.1:15443"}
	benchPeer   = identity.ID{Role: identity.RoleGateway, Cluster: "eu-west-1", Region: "eu-west"}
)

// flowTracing is everything tracing does for one connection: on the
// entering gateway an L4 flow and an HTTP request, each planned and
// tried on one remote candidate (a, made by the caller as prepare makes
// it), and the inbound stream with facts f on the other gateway. It
// returns the facts line the attempt sends.
func flowTracing(g *Gateway, a *attempt, f *wire.Facts, req *http.Request) []byte {
	ctx, span := g.flowSpan(g.ctx, benchTarget, route.FlowIn{Entry: "import"})
	_, plan := g.childSpan(ctx, spanPlan, trace.SpanKindInternal)
	endPlan(plan, benchTarget, a, nil)
	a.ctx = ctx
	sent := a.traceAttempt(benchCand)
	a.endAttempt(nil) // as answered does
	spanFailed(span, nil)
	span.End()

	rctx, rspan := g.requestSpan(g.ctx, req, benchTarget, route.FlowIn{Entry: "import"})
	g.injectHeader(rctx, req.Header)
	streamKind(rctx, "new")
	requestStatus(rspan, 200)
	rspan.End()

	in := g.inboundSpan(benchPeer, benchTarget, *f)
	inboundRefused(in, errBenchRefusal)
	in.End()
	return sent
}

var errBenchRefusal = errors.New(wire.ResidencyPrefix + "class pii-eu may not reach us-east")

// tracingFixture is a planned attempt and the facts its peer reads.
func tracingFixture(t testing.TB, g *Gateway) (*attempt, *wire.Facts, *http.Request) {
	fv := wire.Facts{Classes: []string{"pii-eu"}}
	facts, err := wire.EncodeFacts(fv)
	if err != nil {
		t.Fatal(err)
	}
	f, err := wire.DecodeFacts(facts[:len(facts)-1])
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	return &attempt{g: g, t: benchTarget, facts: facts, factsV: fv}, &f, req
}

// TestTracingOff: without a provider, or with a noop one, the gateway
// has no tracer, sends the facts line unchanged (no trace context),
// adds no traceparent to requests, and allocates nothing for tracing.
func TestTracingOff(t *testing.T) {
	for name, tp := range map[string]trace.TracerProvider{"nil": nil, "noop": noop.NewTracerProvider()} {
		g := tracingGateway(tp)
		if g.tracer != nil {
			t.Fatalf("%s provider: tracing on", name)
		}
		a, f, req := tracingFixture(t, g)
		if sent := flowTracing(g, a, f, req); &sent[0] != &a.facts[0] {
			t.Errorf("%s provider: facts line re-encoded: %q", name, sent)
		}
		if req.Header.Get("Traceparent") != "" {
			t.Errorf("%s provider: request got traceparent %q", name, req.Header.Get("Traceparent"))
		}
		if n := testing.AllocsPerRun(100, func() { flowTracing(g, a, f, req) }); n != 0 {
			t.Errorf("%s provider: %v allocations per flow with tracing off", name, n)
		}
	}
}

// TestTracingAttemptSpans: an attempt's spans end with its result; the
// facts line it sends names its tunnel.stream span; an attempt at the
// local cluster has no tunnel.stream and sends the facts unchanged.
func TestTracingAttemptSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	g := tracingGateway(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	facts, _ := wire.EncodeFacts(wire.Facts{Classes: []string{"pii-eu"}})
	ctx, root := g.flowSpan(context.Background(), benchTarget, route.FlowIn{Entry: "import"})
	a := &attempt{g: g, t: benchTarget, facts: facts, factsV: wire.Facts{Classes: []string{"pii-eu"}}, ctx: ctx, nre: &route.NoRouteError{}}

	sent := a.traceAttempt(benchCand)
	f, err := wire.DecodeFacts(sent[:len(sent)-1])
	if err != nil || f.TraceParent == "" || len(f.Classes) != 1 {
		t.Fatalf("facts sent %q: %+v, %v", sent, f, err)
	}
	a.endAttempt(&wire.Refusal{Reason: wire.ResidencyPrefix + "no"})
	if local := a.traceAttempt(route.Candidate{Cluster: "eu-central-1", Local: true}); &local[0] != &facts[0] {
		t.Errorf("local attempt sent %q", local)
	}
	a.endAttempt(nil)
	root.End()

	spans := exp.GetSpans()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want flow, 2 attempts, 1 tunnel.stream", len(spans))
	}
	var stream tracetest.SpanStub
	results := map[string]string{}
	for _, s := range spans {
		for _, kv := range s.Attributes {
			if kv.Key == attrResult {
				results[s.Name+"/"+kv.Value.AsString()] = s.Status.Description
			}
		}
		if s.Name == spanTunnelStream {
			stream = s
		}
	}
	if f.TraceParent != "00-"+stream.SpanContext.TraceID().String()+"-"+stream.SpanContext.SpanID().String()+"-01" {
		t.Errorf("traceparent %s does not name tunnel.stream %v", f.TraceParent, stream.SpanContext)
	}
	for _, want := range []string{"attempt/residency", "tunnel.stream/residency", "attempt/ok"} {
		if _, ok := results[want]; !ok {
			t.Errorf("no span %s; have %v", want, results)
		}
	}
	if spans[3].Name != spanFlow {
		t.Errorf("last span %s, want flow", spans[3].Name)
	}
}

// BenchmarkTracingOff is the per-connection cost of tracing when off
// (see TestBenchTracingOff for the BENCH line).
func BenchmarkTracingOff(b *testing.B) {
	benchTracing(b, tracingGateway(nil))
}

// BenchmarkTracingOn is the same with an SDK provider that samples
// everything and exports nowhere, for comparison.
func BenchmarkTracingOn(b *testing.B) {
	benchTracing(b, tracingGateway(sdktrace.NewTracerProvider()))
}

func benchTracing(b *testing.B, g *Gateway) {
	a, f, req := tracingFixture(b, g)
	b.ReportAllocs()
	for b.Loop() {
		flowTracing(g, a, f, req)
	}
}

// TestTracingInboundRefusal: a refused inbound stream's span says why by
// category, a residency refusal as residency, and quotes nothing.
func TestTracingInboundRefusal(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	g := tracingGateway(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	f := wire.Facts{TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	for _, err := range []error{errBenchRefusal, errors.New("service demo/x has no port 1")} {
		span := g.inboundSpan(benchPeer, benchTarget, f)
		inboundRefused(span, err)
		span.End()
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	for i, want := range []string{"residency", "refused"} {
		s := spans[i]
		if s.Status.Description != want || s.Parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !s.Parent.IsRemote() {
			t.Errorf("span %d: status %+v, parent %v; want %s under the remote parent", i, s.Status, s.Parent, want)
		}
		for _, kv := range s.Attributes {
			if v := kv.Value.String(); len(v) > 40 {
				t.Errorf("span %d: attribute %s=%q quotes more than a name", i, kv.Key, v)
			}
		}
	}
}
