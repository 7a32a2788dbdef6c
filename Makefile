# Sluice build. Targets: build, test, demo, bench, lint, generate, clean.
# Components add their own rules in the fragments included below; each
# fragment appends to BUILD_TARGETS, TEST_TARGETS and BENCH_TARGETS.
SHELL := /bin/bash
GO ?= go
BUILD := build
ABS_BUILD := $(abspath $(BUILD))
CC ?= gcc
CFLAGS_COMMON := -O2 -g -Wall -Wextra -Werror -fPIC
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GO_LDFLAGS := -X github.com/sluice-gpu/sluice/internal/version.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
export SLUICE_BUILD := $(ABS_BUILD)

BUILD_TARGETS := $(BUILD)/sluiced $(BUILD)/sluice
TEST_TARGETS := test-go
BENCH_TARGETS := bench-go

.PHONY: all build test test-go demo bench bench-go lint generate clean FORCE
all: build

include $(sort $(wildcard shim/*.mk shim/*/*.mk bpf/*.mk containers/*.mk test/*.mk))

build: $(BUILD_TARGETS)

$(BUILD)/sluiced $(BUILD)/sluice: FORCE
	@mkdir -p $(BUILD)
	$(GO) build -ldflags '$(GO_LDFLAGS)' -o $@ ./cmd/$(notdir $@)

test: build $(TEST_TARGETS)

# Go unit and integration tests, race detector on. Tests find artifacts
# through SLUICE_BUILD; root-only and Docker tests skip with one line when
# those are missing (and fail under SLUICE_CI=1).
test-go: build
	$(GO) test -race -count=1 ./...

# The main job: until the live daemon exists, the simulator's comparison of
# all six policies on the embedded default workload.
demo: build
	./$(BUILD)/sluice sim --out $(BUILD)/demo

bench: build $(BENCH_TARGETS)

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

generate:
	$(GO) generate ./...

clean:
	rm -rf $(BUILD)
