SHELL := /bin/bash
# Strait — build, test, demo.
GO        ?= go
BIN       := bin/strait
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 30s
STATICCHECK_VERSION := v0.8.2
# Code generation from proto/ (buf.yaml, buf.gen.yaml). protoc-gen-go is
# built at go.mod's google.golang.org/protobuf, which its output needs.
# TestGeneratedCodeIsCurrent (federation/state/statev1) reads these two lines.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
TOOLS                      := $(CURDIR)/bin/tools

.PHONY: all build image generate test demo bench bench-identity bench-dataplane bench-l7 bench-catalog bench-residency bench-state bench-tracing soak fuzz lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/strait

# The gateway's OCI image without a container daemon (cmd/strait-image,
# internal/imagebuild): a static binary FROM scratch, written as an OCI
# image layout (bin/image/oci) and a tarball for `docker load -i` /
# `podman load -i` (bin/image/strait.tar). GOARCH=arm64 builds for arm64.
IMAGE_DIR := bin/image
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(IMAGE_DIR)/strait ./cmd/strait
	$(GO) run ./cmd/strait-image --binary $(IMAGE_DIR)/strait --version $(VERSION) \
		--revision "$$(git rev-parse HEAD 2>/dev/null)" --created "$$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
		--oci $(IMAGE_DIR)/oci --tarball $(IMAGE_DIR)/strait.tar

# Regenerates the committed Go code of proto/ (federation/state/statev1).
generate:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	$(GO) build -o $(TOOLS)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(TOOLS)/buf lint
	PATH="$(TOOLS):$$PATH" $(TOOLS)/buf generate

# The kube-apiserver the Kubernetes discovery tests start is built first
# (internal/kubetest; cached, a cold build takes minutes), outside any
# test's timeout. The tunnel multiplexer's patched copy
# (third_party/go-yamux) is a module of its own, tested after.
test:
	$(GO) vet ./...
	$(GO) run ./internal/kubetest/prebuild
	$(GO) test -race -count=1 ./...
	cd third_party/go-yamux && $(GO) test -race -count=1 ./...

demo: build
	./$(BIN) dev --info bin/dev-info.json

# Benchmarks print "BENCH <name> <value> <unit>" lines.
BENCHRUN = set -o pipefail; $(GO) test -tags bench -count=1 -v -timeout 60m
BENCHOUT = | grep -E '^(BENCH|--- FAIL|FAIL|panic)'

bench: bench-dataplane bench-l7 bench-catalog bench-residency bench-state bench-identity bench-tracing

# The data plane against HAProxy and a direct connection: iperf3 through
# real `strait gateway` processes, an HAProxy pair and directly (one and
# four streams) and a new connection per request, resident memory per
# idle tunnel and stream; in-process
# throughput, request/response and new-connection latency; a new
# connection across a 50 ms WAN with and without tunnels; failover when a
# cluster dies or is cut off. Installs haproxy and iperf3 with apt-get
# when they are missing. STRAIT_BENCH_PERF=<dir> profiles the gateway
# processes with perf during one more one-stream run. Failure messages
# are kept in the output.
bench-dataplane:
	$(BENCHRUN) -run '^TestBenchDataplane' ./lab | grep -E '^(BENCH|--- FAIL|FAIL|panic|\s+\S+_test\.go:[0-9]+: )'

# What tracing costs a connection when it is off (no OTEL_* variables):
# ns and allocations of every span helper a flow, an HTTP request and an
# inbound stream call; the same with tracing on, for comparison. The data
# path with tracing off is bench-dataplane's figures (docs/tracing.md).
bench-tracing:
	$(BENCHRUN) -run '^TestBenchTracingOff$$' ./gateway $(BENCHOUT)

# One mTLS handshake with the gateway's identity (certificate and trust
# read at every handshake) against static crypto/tls configs: p50, p99 and
# their ratio.
bench-identity:
	$(BENCHRUN) -run '^TestBenchHandshake$$' ./identity $(BENCHOUT)

# HTTP through real `strait gateway` processes against a direct baseline
# and an HAProxy pair in HTTP mode (h2c in, HTTP/2 over TLS between,
# HTTP/1.1 to the service), loaded by h2load: req/s and p99 latency; then
# failed requests and the slowest request when the preferred cluster's
# gateway is killed under keep-alive HTTP/2 load. Installs haproxy and
# h2load (nghttp2-client) with apt-get when they are missing. Failure
# messages are kept in the output.
bench-l7:
	$(BENCHRUN) -run '^TestBenchL7$$' ./lab | grep -E '^(BENCH|--- FAIL|FAIL|panic|\s+\S+_test\.go:[0-9]+: )'

# Catalog convergence at 64 and 256 gateways, failure detection, false
# deaths under CPU load (60 s), join of a 1,000,000-service catalog.
bench-catalog:
	$(BENCHRUN) -run '^TestBenchCatalog' ./federation/catalog $(BENCHOUT)

# The residency decision path: ns per Decide and allocations (must be 0).
bench-residency:
	set -o pipefail; $(GO) test -tags bench -run '^TestBenchResidency' -count=1 -v ./sovereignty | grep -E '^(BENCH|residency_decide.* rounds|--- FAIL|FAIL|panic)'

# Routing-state benchmarks only: commit latency, throughput, leader failover.
bench-state:
	set -o pipefail; $(GO) test -tags bench -run '^TestBenchState' -count=1 -v ./federation/state | grep -E '^(BENCH|--- FAIL|FAIL|panic)'

# The Jepsen-style linearizability test for SOAKTIME (make test runs 6s of it).
SOAKTIME ?= 3m
soak:
	$(GO) test -race -run '^TestJepsenLinearizable$$' -count=1 -v -timeout 30m ./federation/state -args -jepsen.duration=$(SOAKTIME)

# Every fuzz target, FUZZTIME each.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSNI$$' -fuzztime $(FUZZTIME) ./gateway/wire
	$(GO) test -run '^$$' -fuzz '^FuzzParseAuthority$$' -fuzztime $(FUZZTIME) ./gateway/wire
	$(GO) test -run '^$$' -fuzz '^FuzzParseMeshSNI$$' -fuzztime $(FUZZTIME) ./gateway/wire
	$(GO) test -run '^$$' -fuzz '^FuzzReadClientHello$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./gateway/wire
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./federation/catalog
	$(GO) test -run '^$$' -fuzz '^FuzzSignedEntry$$' -fuzztime $(FUZZTIME) ./federation/catalog
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./internal/yamlpos
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./internal/configfile
	$(GO) test -run '^$$' -fuzz '^FuzzParseFile$$' -fuzztime $(FUZZTIME) ./discovery
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME) ./sovereignty
	$(GO) test -run '^$$' -fuzz '^FuzzParseTopology$$' -fuzztime $(FUZZTIME) ./sovereignty
	$(GO) test -run '^$$' -fuzz '^FuzzProxyRequestHead$$' -fuzztime $(FUZZTIME) ./gateway
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFacts$$' -fuzztime $(FUZZTIME) ./gateway/wire
	$(GO) test -run '^$$' -fuzz '^FuzzReadStreamHeader$$' -fuzztime $(FUZZTIME) ./gateway/wire
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME) ./federation/state
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSnapshot$$' -fuzztime $(FUZZTIME) ./federation/state
	$(GO) test -run '^$$' -fuzz '^FuzzValidatePayload$$' -fuzztime $(FUZZTIME) ./federation/state
	$(GO) test -run '^$$' -fuzz '^FuzzParseToken$$' -fuzztime $(FUZZTIME) ./identity
	$(GO) test -run '^$$' -fuzz '^FuzzParseDNS$$' -fuzztime $(FUZZTIME) ./identity
	$(GO) test -run '^$$' -fuzz '^FuzzClustersetName$$' -fuzztime $(FUZZTIME) ./gateway/clusterset
	$(GO) test -run '^$$' -fuzz '^FuzzAnswer$$' -fuzztime $(FUZZTIME) ./gateway/clusterset
	$(GO) test -run '^$$' -fuzz '^FuzzParseDrill$$' -fuzztime $(FUZZTIME) ./drill

lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin
