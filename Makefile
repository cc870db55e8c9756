# Weft's build. `make lab` runs the one-machine lab; `make unit` runs the
# tests that need no root, lab or control plane (the loop after every
# edit); `make test` runs every check and every test (as root: they make
# network namespaces), as CI does.
GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/weftnet/weft/internal/version.Version=$(VERSION)
export CGO_ENABLED = 0
# The portmap plugin Weft ships as weft-portmap: containernetworking's, at
# the version go.mod pins (a tool of the module), stamped with it.
PORTMAP := github.com/containernetworking/plugins

.PHONY: all build deps lab unit e2e race lint vet test suite bench map clean kube

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft ./cmd/weft
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft-cni ./cmd/weft-cni
	$(GO) build -trimpath -ldflags "-s -w -X $(PORTMAP)/pkg/utils/buildversion.BuildVersion=$$($(GO) list -m -f '{{.Version}}' $(PORTMAP))" \
		-o $(BIN)/weft-portmap $(PORTMAP)/plugins/meta/portmap
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/weft-lab ./cmd/weft-lab
	$(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/weft-pause ./cmd/weft-pause
	$(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/netcheck ./cmd/netcheck

deps:
	./hack/install-deps.sh

lab: deps build
	$(BIN)/weft lab run

# The Kubernetes control plane the tests run (kube-apiserver,
# kube-controller-manager, kubectl, etcd), built once per machine into
# /var/cache/weft/kube-<version>/: about 12 minutes the first time; then
# what `weft lab up --kubelet` adds (kubelet, kube-scheduler, containerd):
# about 5 more minutes of CPU.
kube:
	./hack/kube/build.sh
	./hack/kube/build-node.sh
	./hack/containerd/build.sh

# The packages whose code runs goroutines that share memory: `make race`
# runs their tests (as root, those that make namespaces too) with the race
# detector, which needs cgo for that run only: the binaries stay static.
RACE_PKGS := ./internal/agent/ ./internal/agentserve/ ./internal/agentapi/ ./internal/policyctl/ \
	./internal/netpolnft/ ./internal/probe/ ./internal/metrics/ ./internal/cnievents/ ./internal/ipam/ \
	./internal/store/... ./cmd/netcheck/

# staticcheck, pinned; `go run` builds it once into Go's cache.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# What needs no root, no lab and no control plane: under -short every test
# that does skips, saying why (testnet.RequireRoot). Results are cached:
# only what an edit touched runs again.
unit: build
	WEFT_BIN_DIR=$(BIN) $(GO) test -short ./cmd/... ./internal/... ./deploy/... .

# The end-to-end suites: labs, the CNI plugin through libcni, a real
# control plane, real kubelets.
e2e: deps build kube
	WEFT_BIN_DIR=$(BIN) $(GO) test -count=1 -p 1 -timeout 60m ./test/e2e/...

race: build
	CGO_ENABLED=1 WEFT_BIN_DIR=$(BIN) $(GO) test -race -count=1 -p 1 -timeout 30m $(RACE_PKGS)

vet:
	test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(GO) vet ./...

lint: vet
	$(GO) run $(STATICCHECK) ./...

# Rewrites the README's map of the code from the packages' doc comments
# (the test of the same name fails while they differ).
map:
	$(GO) test . -run TestMaintainersMap -update

# Every check, the race run and every test. The checks and the race run
# go beside the suite, whose labs and clusters leave the CPU idle while
# they wait; the race run's packages are not run twice.
test: deps build kube
	$(MAKE) --no-print-directory -j2 -Oline lint race suite

# Every test but those of the race run's packages.
suite: build
	WEFT_BIN_DIR=$(BIN) $(GO) test -count=1 -p 1 -timeout 60m \
		$$($(GO) list ./... | grep -vxF "$$($(GO) list $(RACE_PKGS))")

bench: deps build
	$(BIN)/weft bench cni
	$(BIN)/weft bench throughput
	$(BIN)/weft bench join
	$(BIN)/weft bench scale
	$(BIN)/weft bench policy
	$(BIN)/weft bench chaos

clean:
	rm -rf $(BIN)
