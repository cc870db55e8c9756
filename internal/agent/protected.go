package agent

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// EndpointPrefixes are the addresses of the datastore endpoints (URLs or
// host:port, comma-separated), as /32 prefixes that no peer's record may
// get a route to: a record that routed the datastore's address to a peer
// would cut this node off from the very store that could correct it. A
// host name is resolved once, now; one that does not resolve is skipped
// (the cluster CIDR check still bounds what a record may claim).
func EndpointPrefixes(ctx context.Context, endpoints string) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range strings.Split(endpoints, ",") {
		host := hostOf(strings.TrimSpace(e))
		if host == "" {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.BitLen()))
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, _ := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		for _, ip := range ips {
			ip = ip.Unmap()
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return out
}

// hostOf is the host of a URL or host:port, without brackets.
func hostOf(e string) string {
	if e == "" {
		return ""
	}
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return ""
		}
		return u.Hostname()
	}
	if h, _, err := net.SplitHostPort(e); err == nil {
		return h
	}
	return strings.Trim(e, "[]")
}
