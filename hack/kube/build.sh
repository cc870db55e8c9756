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
cache_root="${WEFT_KUBE_CACHE:-/var/cache/weft}"
dir="$cache_root/kube-$KUBE_VERSION"
bins=(kube-apiserver kube-controller-manager kubectl etcd)

complete() {
	for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
	[ "$(cat "$dir/VERSION" 2>/dev/null)" = "$KUBE_VERSION etcd-$ETCD_VERSION" ]
}

mkdir -p "$cache_root"
# One build at a time per machine: a second caller waits for the first and
# then finds the cache complete.
exec 9>"$cache_root/.kube-build.lock"
flock 9

if complete; then
	echo "$dir"
	exit 0
fi

echo "building Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION into $dir (first build takes about 12 minutes)" >&2
tmp="$(mktemp -d "$cache_root/.kube-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cd "$here"
export CGO_ENABLED=0
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR"
for cmd in kube-apiserver kube-controller-manager kubectl; do
	start=$SECONDS
	go build -trimpath -ldflags "$ldflags" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
	echo "built $cmd in $((SECONDS - start))s" >&2
done
start=$SECONDS
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" ./etcd
echo "built etcd in $((SECONDS - start))s" >&2

echo "$KUBE_VERSION etcd-$ETCD_VERSION" >"$tmp/VERSION"
# Publish the whole set at once so a reader never sees half a cache.
rm -rf "$dir"
mv "$tmp" "$dir"
chmod 755 "$dir"
trap - EXIT
echo "$dir"
