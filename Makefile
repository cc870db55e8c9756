# Weft's build. `make lab` runs the one-machine lab; `make test` runs every
# test (as root: they make network namespaces).
GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/weftnet/weft/internal/version.Version=$(VERSION)
export CGO_ENABLED = 0
# The portmap plugin Weft ships as weft-portmap: containernetworking's, at
# the version go.mod pins (a tool of the module), stamped with it.
PORTMAP := github.com/containernetworking/plugins

.PHONY: all build deps lab test bench vet clean kube

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

vet:
	test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(GO) vet ./...

test: deps build vet kube
	WEFT_BIN_DIR=$(BIN) $(GO) test -count=1 -p 1 -timeout 60m ./...

bench: deps build
	$(BIN)/weft bench cni
	$(BIN)/weft bench throughput
	$(BIN)/weft bench join
	$(BIN)/weft bench scale
	$(BIN)/weft bench policy
	$(BIN)/weft bench chaos

clean:
	rm -rf $(BIN)
