#!/usr/bin/env bash
# Builds what a Kubernetes node and its scheduling need beside the control
# plane of build.sh: kubelet and kube-scheduler, from the same module (this
# directory's go.mod), into their own cache directory keyed by version.
# It shares build.sh's lock and Go build cache, so after build.sh it costs
# little; when the binaries are present it does nothing.
#
# After build.sh, the first build takes about 3 minutes on two cores.
#
# Usage: hack/kube/build-node.sh       (prints the cache directory)
# Env:   WEFT_KUBE_CACHE  parent cache directory (default /var/cache/weft)
set -euo pipefail

KUBE_VERSION=v1.37.2
KUBE_MINOR=37

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../lib/cache.sh"
bins=(kubelet kube-scheduler)
# build.sh's lock: one Kubernetes build at a time per machine.
cache_open "kube-node-$KUBE_VERSION" "$KUBE_VERSION" kube-build "${bins[@]}"
echo "building kubelet and kube-scheduler $KUBE_VERSION into $cache_dir" >&2

cd "$here"
export CGO_ENABLED=0
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR"
for cmd in "${bins[@]}"; do
	start=$SECONDS
	nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$cache_tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
	echo "built $cmd in $((SECONDS - start))s" >&2
done

cache_publish
