SHELL := /bin/bash
# Strait — build, test, demo.
GO        ?= go
BIN       := bin/strait
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 30s
STATICCHECK_VERSION := v0.8.2

.PHONY: all build test demo bench bench-state soak fuzz lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/strait

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

demo: build
	./$(BIN) dev --info bin/dev-info.json

# Benchmarks print "BENCH <name> <value> <unit>" lines.
bench: bench-state
	set -o pipefail; $(GO) test -tags bench -run '^TestBench' -count=1 -v ./... | grep -E '^(BENCH|--- FAIL|FAIL|panic)'

# Routing-state benchmarks only: commit latency, throughput, leader failover.
bench-state:
	set -o pipefail; $(GO) test -tags bench -run '^TestBenchState' -count=1 -v ./federation | grep -E '^(BENCH|--- FAIL|FAIL|panic)'

# The Jepsen-style linearizability test for SOAKTIME (make test runs 6s of it).
SOAKTIME ?= 3m
soak:
	$(GO) test -race -run '^TestJepsenLinearizable$$' -count=1 -v -timeout 30m ./federation -args -jepsen.duration=$(SOAKTIME)

# Every fuzz target, FUZZTIME each.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSNI$$' -fuzztime $(FUZZTIME) ./gateway
	$(GO) test -run '^$$' -fuzz '^FuzzParseAuthority$$' -fuzztime $(FUZZTIME) ./gateway
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./federation
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME) ./federation
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSnapshot$$' -fuzztime $(FUZZTIME) ./federation
	$(GO) test -run '^$$' -fuzz '^FuzzValidatePayload$$' -fuzztime $(FUZZTIME) ./federation
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./internal/configfile

lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin
