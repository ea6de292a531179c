// Package otlptrace turns the standard OpenTelemetry environment
// variables into the tracer provider of a `strait gateway` process, or
// none: tracing is off unless the environment asks for it
// (docs/tracing.md).
//
// Invariants: with none of the variables below set, Start returns a nil
// provider and starts nothing, so the gateway traces nothing and pays
// nothing (TestOffByDefault). When on, spans leave in batches through an
// OTLP exporter that reads its endpoint, headers, TLS and timeouts from
// OTEL_EXPORTER_OTLP_*; the SDK reads the sampler (OTEL_TRACES_SAMPLER,
// OTEL_TRACES_SAMPLER_ARG) and the batching (OTEL_BSP_*). Shutdown
// flushes what is queued.
package otlptrace

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise.
const ServiceName = "strait-gateway"

// Settings is what the environment asks for.
type Settings struct {
	// On: export spans. Off when OTEL_SDK_DISABLED=true or
	// OTEL_TRACES_EXPORTER=none; on when OTEL_TRACES_EXPORTER=otlp, or,
	// with it unset, when OTEL_EXPORTER_OTLP_ENDPOINT or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
	On bool
	// Protocol is grpc or http/protobuf (the default), from
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL.
	Protocol string
}

// FromEnv reads the settings through getenv (os.Getenv); a value Strait
// does not support is an error that names the variable.
func FromEnv(getenv func(string) string) (Settings, error) {
	var s Settings
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return s, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return s, nil
	case "otlp":
		s.On = true
	case "":
		s.On = getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return s, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: strait gateway exports traces with otlp, or none", exp)
	}
	if !s.On {
		return s, nil
	}
	key := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	s.Protocol = strings.TrimSpace(getenv(key))
	if s.Protocol == "" {
		key = "OTEL_EXPORTER_OTLP_PROTOCOL"
		s.Protocol = strings.TrimSpace(getenv(key))
	}
	switch s.Protocol {
	case "":
		s.Protocol = "http/protobuf"
	case "grpc", "http/protobuf":
	default:
		return Settings{}, fmt.Errorf("%s=%q: strait gateway speaks OTLP over grpc or http/protobuf", key, s.Protocol)
	}
	return s, nil
}

// Gateway names the process in its resource, beside what
// OTEL_RESOURCE_ATTRIBUTES adds (which wins).
type Gateway struct {
	Cluster, Region, Version string
}

// Start builds the tracer provider s asks for: nil when off. shutdown
// flushes and stops it (a no-op when off).
func Start(ctx context.Context, s Settings, gw Gateway) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if !s.On {
		return nil, noop, nil
	}
	var exp sdktrace.SpanExporter
	switch s.Protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, noop, fmt.Errorf("OTLP trace exporter (%s): %w", s.Protocol, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(gw.Version),
			semconv.CloudRegion(gw.Region), attribute.String("strait.cluster", gw.Cluster)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, noop, fmt.Errorf("trace resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	p := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return p, p.Shutdown, nil
}
