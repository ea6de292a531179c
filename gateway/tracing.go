package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
)

// Tracing (docs/tracing.md). A flow's spans, on the gateway it enters:
//
//	http.request (one per HTTP request) or flow (one per L4 connection)   server
//	├─ plan      the routing decision: service, classes, candidates, outcome
//	└─ attempt   one per candidate tried: cluster, result
//	   └─ tunnel.stream   the stream to the peer gateway, until its answer  client
//
// and on the gateway that serves it, inbound (server), a child of the
// tunnel.stream whose W3C trace context came in the stream's facts line
// (wire.Facts.TraceParent). An HTTP request's incoming traceparent is the
// parent of its http.request span, and the service gets the
// http.request span's own.
//
// Off (Options.TracerProvider nil, or a noop provider) g.tracer is nil:
// every helper here returns at its first line, nothing is allocated and
// no trace context is sent. Children are started only under a valid
// parent, so a flow the gateway did not start a trace for (a CONNECT's
// pre-check plan) records nothing. Span attributes carry names (service,
// clusters, regions, class names), never header values or payload.
const (
	spanHTTPRequest  = "http.request"
	spanFlow         = "flow"
	spanPlan         = "plan"
	spanAttempt      = "attempt"
	spanTunnelStream = "tunnel.stream"
	spanInbound      = "inbound"
)

// Attribute keys of Strait's own (semconv has none for these).
const (
	attrCluster     = attribute.Key("strait.cluster")      // the gateway's own cluster
	attrService     = attribute.Key("strait.service")      // namespace/name
	attrEntry       = attribute.Key("strait.entry")        // import, connect, http, passthrough
	attrClasses     = attribute.Key("strait.classes")      // residency class names
	attrCandidates  = attribute.Key("strait.candidates")   // allowed candidates of the plan
	attrOutcome     = attribute.Key("strait.outcome")      // allowed, residency, access, unknown, refused
	attrDestCluster = attribute.Key("strait.dest.cluster") // an attempt's candidate
	attrDestRegion  = attribute.Key("strait.dest.region")
	attrLocal       = attribute.Key("strait.local")        // the candidate is the local cluster
	attrResult      = attribute.Key("strait.result")       // ok, refused, residency, failed
	attrPeerCluster = attribute.Key("strait.peer.cluster") // the other gateway
	attrPeerRegion  = attribute.Key("strait.peer.region")
	attrStream      = attribute.Key("strait.stream") // new or kept (HTTP)
)

// tracerName is the instrumentation scope of the gateway's spans.
const tracerName = "github.com/straitmesh/strait/gateway"

// newTracer is the gateway's tracer: nil (tracing off) without a
// provider or with a noop one.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return nil
	}
	return tp.Tracer(tracerName)
}

// noSpan records nothing; returned when tracing is off.
var noSpan = trace.SpanFromContext(context.Background())

var traceContext propagation.TraceContext

// childSpan starts a span under ctx's span; off, or without a parent,
// it returns ctx and noSpan.
func (g *Gateway) childSpan(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if g.tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, noSpan
	}
	return g.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// requestSpan starts the span of one HTTP request to t, under the
// client's traceparent when it sent one.
func (g *Gateway) requestSpan(ctx context.Context, req *http.Request, t wire.Target, in route.FlowIn) (context.Context, trace.Span) {
	if g.tracer == nil {
		return ctx, noSpan
	}
	ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(req.Header))
	return g.tracer.Start(ctx, spanHTTPRequest, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(httpMethod(req.Method)),
		attrService.String(t.Namespace+"/"+t.Name), semconv.ServerPort(t.Port),
		attrEntry.String(in.Entry), attrCluster.String(g.cfg.Cluster)))
}

// httpMethod is the method as semconv names it: one it knows, or _OTHER.
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// requestStatus records an HTTP request's status on its span.
func requestStatus(span trace.Span, status int) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		span.SetStatus(codes.Error, strconv.Itoa(status))
	}
}

// injectHeader sets traceparent (and tracestate) in h, a request the
// gateway sends to a service, to ctx's span: the service's spans become
// its children. Off, h keeps what the client sent.
func (g *Gateway) injectHeader(ctx context.Context, h http.Header) {
	if g.tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
}

// streamKind records on ctx's span (an http.request) whether its request
// went on a new stream or one kept from an earlier request (whose inbound
// span belongs to the request that opened it).
func streamKind(ctx context.Context, kind string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attrStream.String(kind))
	}
}

// flowSpan starts the span of one L4 connection to t (an import port
// that does not speak HTTP, a CONNECT tunnel, passthrough).
func (g *Gateway) flowSpan(ctx context.Context, t wire.Target, in route.FlowIn) (context.Context, trace.Span) {
	if g.tracer == nil {
		return ctx, noSpan
	}
	return g.tracer.Start(ctx, spanFlow, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attrService.String(t.Namespace+"/"+t.Name), semconv.ServerPort(t.Port),
		attrEntry.String(in.Entry), attrCluster.String(g.cfg.Cluster)))
}

// spanFailed marks span failed with a category, never the error's text
// (it may quote what a client sent).
func spanFailed(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	kind := errorKind(err)
	span.SetAttributes(semconv.ErrorTypeKey.String(kind))
	span.SetStatus(codes.Error, kind)
}

// errorKind is the category of a flow's error for spans.
func errorKind(err error) string {
	var nre *route.NoRouteError
	var rr *wire.Refusal
	switch {
	case errors.As(err, &nre) && nre.Residency != "":
		return "residency"
	case errors.As(err, &nre) && nre.Access != "":
		return "access"
	case errors.As(err, &nre):
		return "no_route"
	case errors.As(err, &rr) && rr.Residency():
		return "residency"
	case errors.As(err, &rr):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "failed"
}

// errSuperseded ends an attempt's spans that neither answered nor failed
// before the next candidate was tried (none today; a guard).
var errSuperseded = errors.New("superseded")

// inboundRefused marks an inbound span refused: "residency" for a
// residency refusal, else "refused".
func inboundRefused(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	spanFailed(span, &wire.Refusal{Reason: err.Error()})
}

// endPlan records a plan's outcome on its span and ends it.
func endPlan(span trace.Span, t wire.Target, a *attempt, err error) {
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attrService.String(t.Namespace + "/" + t.Name), semconv.ServerPort(t.Port)}
	if a != nil {
		attrs = append(attrs, attrClasses.StringSlice(a.factsV.Classes), attrCandidates.Int(len(a.cands)), attrOutcome.String("allowed"))
	} else {
		attrs = append(attrs, attrOutcome.String(errorKind(err)))
	}
	span.SetAttributes(attrs...)
	spanFailed(span, err)
	span.End()
}

// traceAttempt starts the spans of a's try of candidate c (attempt, and
// tunnel.stream for another cluster) and returns the facts line to send
// it: a.facts, with the tunnel.stream's trace context when traced.
func (a *attempt) traceAttempt(c route.Candidate) []byte {
	g := a.g
	if g.tracer == nil || !trace.SpanContextFromContext(a.ctx).IsValid() {
		return a.facts
	}
	a.endAttempt(errSuperseded) // never left open
	ctx, span := g.tracer.Start(a.ctx, spanAttempt, trace.WithAttributes(
		attrDestCluster.String(c.Cluster), attrDestRegion.String(c.Region), attrLocal.Bool(c.Local)))
	a.span = span
	if c.Local {
		return a.facts
	}
	ctx, a.stream = g.tracer.Start(ctx, spanTunnelStream, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attrPeerCluster.String(c.Cluster), attrPeerRegion.String(c.Region), semconv.ServerAddress(c.Addr)))
	f := a.factsV
	traceContext.Inject(ctx, factsCarrier{&f})
	b, err := wire.EncodeFacts(f)
	if err != nil {
		return a.facts
	}
	return b
}

// endAttempt ends the spans of the candidate a tried last: err nil when
// it took the flow.
func (a *attempt) endAttempt(err error) {
	if a.span == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = errorKind(err)
	}
	for _, s := range []trace.Span{a.stream, a.span} {
		if s == nil {
			continue
		}
		s.SetAttributes(attrResult.String(result))
		spanFailed(s, err)
		s.End()
	}
	a.span, a.stream = nil, nil
}

// inboundSpan starts the span of a stream from peer to t, a child of the
// peer's tunnel.stream when its facts carry a trace context.
func (g *Gateway) inboundSpan(peer identity.ID, t wire.Target, facts wire.Facts) trace.Span {
	if g.tracer == nil {
		return noSpan
	}
	// A copy, so that only a traced stream's facts go to the heap.
	f := facts
	ctx := traceContext.Extract(g.ctx, factsCarrier{&f})
	_, span := g.tracer.Start(ctx, spanInbound, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attrService.String(t.Namespace+"/"+t.Name), semconv.ServerPort(t.Port), attrCluster.String(g.cfg.Cluster),
		attrPeerCluster.String(peer.Cluster), attrPeerRegion.String(peer.Region)))
	return span
}

// factsCarrier lets the W3C propagator read and write a facts line's
// trace context.
type factsCarrier struct{ f *wire.Facts }

func (c factsCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.f.TraceParent
	case "tracestate":
		return c.f.TraceState
	}
	return ""
}

func (c factsCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.f.TraceParent = value
	case "tracestate":
		c.f.TraceState = value
	}
}

func (c factsCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
