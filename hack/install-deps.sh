#!/usr/bin/env bash
# Installs the Debian packages that Weft's lab, tests and benchmarks use,
# only when something is missing. Safe to run again.
set -euo pipefail
need=()
command -v ip >/dev/null       || need+=(iproute2)
command -v nsenter >/dev/null  || need+=(util-linux)
command -v iperf3 >/dev/null   || need+=(iperf3)
command -v nft >/dev/null      || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
[ -x /usr/lib/cni/portmap ]    || need+=(containernetworking-plugins)
command -v make >/dev/null     || need+=(make)
# runc runs the containers of `weft lab up --kubelet` (containerd is built
# from Go by hack/containerd/build.sh; runc needs cgo).
command -v runc >/dev/null     || need+=(runc)
# `make race`: the race detector needs cgo, a C compiler and libc's headers.
command -v gcc >/dev/null      || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing: ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
