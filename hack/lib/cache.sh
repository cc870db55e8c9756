# Sourced by hack's build scripts: a per-machine cache of binaries built
# from Go modules, one directory per set under $WEFT_KUBE_CACHE (default
# /var/cache/weft), named for its version, so that a machine builds each
# set once.
#
#   cache_open DIR STAMP LOCK BIN...   sets $cache_dir (DIR under the cache);
#                                      prints it and exits when every BIN is
#                                      there and its VERSION file says STAMP;
#                                      otherwise holds LOCK, sets $cache_tmp
#   cache_publish                      moves $cache_tmp to $cache_dir whole
#
# One build per lock at a time: a second caller waits for the first and
# then finds the set complete. The set is published with one rename, so a
# reader never sees half of it.

cache_open() {
	local name=$1 lock=$3
	cache_version=$2
	shift 3
	cache_bins=("$@")
	local root="${WEFT_KUBE_CACHE:-/var/cache/weft}"
	cache_dir="$root/$name"
	mkdir -p "$root"
	exec 9>"$root/.$lock.lock"
	flock 9
	if cache_complete; then
		echo "$cache_dir"
		exit 0
	fi
	cache_tmp="$(mktemp -d "$root/.$name-build.XXXXXX")"
	trap 'rm -rf "$cache_tmp"' EXIT
}

cache_complete() {
	local b
	for b in "${cache_bins[@]}"; do [ -x "$cache_dir/$b" ] || return 1; done
	[ "$(cat "$cache_dir/VERSION" 2>/dev/null)" = "$cache_version" ]
}

cache_publish() {
	echo "$cache_version" >"$cache_tmp/VERSION"
	rm -rf "$cache_dir"
	mv "$cache_tmp" "$cache_dir"
	chmod 755 "$cache_dir"
	trap - EXIT
	echo "$cache_dir"
}
