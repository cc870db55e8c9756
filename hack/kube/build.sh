#!/usr/bin/env bash
# Builds the Kubernetes control plane that Weft's tests run on loopback:
# kube-apiserver, kube-controller-manager, kubectl and etcd, from the Go
# modules pinned in this directory's go.mod. The binaries land in a cache
# directory keyed by version, so a machine builds them once; when they are
# all present this script does nothing.
#
# The first build on a fresh machine takes about 12 minutes of CPU on two
# cores, about 2.5 GB of memory and 5 GB of Go build cache.
#
# Usage: hack/kube/build.sh            (prints the cache directory)
# Env:   WEFT_KUBE_CACHE  parent cache directory (default /var/cache/weft)
set -euo pipefail

KUBE_VERSION=v1.37.2
KUBE_MINOR=37
ETCD_VERSION=v3.7.3

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/cache.sh"
cache_open "kube-$KUBE_VERSION" "$KUBE_VERSION etcd-$ETCD_VERSION" kube-build kube-apiserver kube-controller-manager kubectl etcd
echo "building Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION into $cache_dir (first build takes about 12 minutes)" >&2

cd "$here"
export CGO_ENABLED=0
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR"
for cmd in kube-apiserver kube-controller-manager kubectl; do
	start=$SECONDS
	go build -trimpath -ldflags "$ldflags" -o "$cache_tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
	echo "built $cmd in $((SECONDS - start))s" >&2
done
start=$SECONDS
go build -trimpath -ldflags "-s -w" -o "$cache_tmp/etcd" ./etcd
echo "built etcd in $((SECONDS - start))s" >&2

cache_publish
