package main

import (
	"strings"
	"testing"
)

// TestGatewayTracingFromEnv: `strait gateway` reads the OTEL_* variables
// before it starts (--check reports them): off by default, on with an
// OTLP endpoint, and a value it cannot serve is an error naming the
// variable.
func TestGatewayTracingFromEnv(t *testing.T) {
	cfg := writeConfig(t, goodConfig)
	off := []string{"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_SDK_DISABLED="}
	out, stderr, code := runStrait(t, off, "gateway", "--config", cfg, "--check")
	if code != 0 || strings.Contains(out, "traces:") {
		t.Errorf("no OTEL_* variables: exit %d, %s%s", code, out, stderr)
	}
	out, stderr, code = runStrait(t, append(off, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "gateway", "--config", cfg, "--check")
	if code != 0 || !strings.Contains(out, "traces: exported over OTLP (grpc)") {
		t.Errorf("with an OTLP endpoint: exit %d, %s%s", code, out, stderr)
	}
	_, stderr, code = runStrait(t, append(off, "OTEL_TRACES_EXPORTER=zipkin"), "gateway", "--config", cfg, "--check")
	if code == 0 || !strings.Contains(stderr, `OTEL_TRACES_EXPORTER="zipkin"`) {
		t.Errorf("unsupported exporter: exit %d, %s", code, stderr)
	}
}
