#!/usr/bin/env bash
# Builds the container runtime that `weft lab up --kubelet` gives every
# node: containerd 2.x, its runc shim and ctr (to import images), from the
# Go module pinned in this directory's go.mod, without cgo (btrfs,
# devmapper and zfs snapshotters left out). runc itself needs cgo and comes
# from Debian (hack/install-deps.sh). The binaries land in a cache
# directory keyed by version, so a machine builds them once; when they are
# all present this script does nothing.
#
# The first build on a fresh machine takes about 3 minutes on two cores.
#
# Usage: hack/containerd/build.sh      (prints the cache directory)
# Env:   WEFT_KUBE_CACHE  parent cache directory (default /var/cache/weft)
set -euo pipefail

CONTAINERD_VERSION=v2.4.2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/cache.sh"
bins=(containerd containerd-shim-runc-v2 ctr)
cache_open "containerd-$CONTAINERD_VERSION" "$CONTAINERD_VERSION" containerd-build "${bins[@]}"
echo "building containerd $CONTAINERD_VERSION into $cache_dir (first build takes about 3 minutes)" >&2

cd "$here"
export CGO_ENABLED=0
ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
for cmd in "${bins[@]}"; do
	start=$SECONDS
	nice -n 10 go build -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "$ldflags" \
		-o "$cache_tmp/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd"
	echo "built $cmd in $((SECONDS - start))s" >&2
done

cache_publish
