package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weftnet/weft/internal/netns"
)

// DialIn returns a dial function whose sockets are made inside the named
// namespace. A socket stays in the namespace it was made in, so the
// connection is then used from any thread. This is how the lab's
// controller talks to agents and the datastore without giving the host's
// own namespace an address or a route into the lab.
func DialIn(nsName string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := ns.WithNetNSPath(netns.Path(nsName), func(ns.NetNS) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			conn = c
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dial %s in %s: %w", addr, nsName, err)
		}
		return conn, nil
	}
}

// httpGetIn fetches url from inside the named namespace and returns the
// status code.
func httpGetIn(ctx context.Context, nsName, url string) (int, error) {
	c := &http.Client{
		Transport: &http.Transport{DialContext: DialIn(nsName), DisableKeepAlives: true},
		Timeout:   2 * time.Second,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
