# Weft's build. `make lab` runs the one-machine lab; `make test` runs every
# test (as root: they make network namespaces).
GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/weftnet/weft/internal/version.Version=$(VERSION)
export CGO_ENABLED = 0

.PHONY: all build deps lab test bench vet clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft ./cmd/weft
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft-cni ./cmd/weft-cni

deps:
	./hack/install-deps.sh

lab: deps build
	$(BIN)/weft lab run

vet:
	test -z "$$(gofmt -l cmd internal test bench)" || (gofmt -l cmd internal test bench; exit 1)
	$(GO) vet ./...

test: deps build vet
	WEFT_BIN_DIR=$(BIN) $(GO) test -count=1 -p 1 -timeout 60m ./...

bench: deps build
	$(BIN)/weft bench cni

clean:
	rm -rf $(BIN)
