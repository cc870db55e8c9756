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
cache_root="${WEFT_KUBE_CACHE:-/var/cache/weft}"
dir="$cache_root/containerd-$CONTAINERD_VERSION"
bins=(containerd containerd-shim-runc-v2 ctr)

complete() {
	for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
	[ "$(cat "$dir/VERSION" 2>/dev/null)" = "$CONTAINERD_VERSION" ]
}

mkdir -p "$cache_root"
# One build at a time per machine: a second caller waits for the first and
# then finds the cache complete.
exec 9>"$cache_root/.containerd-build.lock"
flock 9

if complete; then
	echo "$dir"
	exit 0
fi

echo "building containerd $CONTAINERD_VERSION into $dir (first build takes about 3 minutes)" >&2
tmp="$(mktemp -d "$cache_root/.containerd-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cd "$here"
export CGO_ENABLED=0
ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
for cmd in "${bins[@]}"; do
	start=$SECONDS
	nice -n 10 go build -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "$ldflags" \
		-o "$tmp/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd"
	echo "built $cmd in $((SECONDS - start))s" >&2
done

echo "$CONTAINERD_VERSION" >"$tmp/VERSION"
# Publish the whole set at once so a reader never sees half a cache.
rm -rf "$dir"
mv "$tmp" "$dir"
chmod 755 "$dir"
trap - EXIT
echo "$dir"
