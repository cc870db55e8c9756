package agent

import (
	"context"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

// watchKernel tells the main loop, coalesced, when the kernel changed
// something the datapath rests on without the agent asking: an interface
// that went down or came up (the kernel deletes every route through an
// interface that goes down, and does not put them back when it comes up),
// or a route of Weft's protocol deleted by someone else. The loop then
// repairs at once instead of at the next resync. Pod veths come and go
// with every pod and change nothing of the datapath: they are ignored.
//
// Without the subscriptions (an error is returned) the resync still
// repairs everything, only later.
func watchKernel(ctx context.Context, settle time.Duration) (<-chan struct{}, error) {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.LinkSubscribe(links, done); err != nil {
		close(done)
		return nil, err
	}
	if err := netlink.RouteSubscribe(routes, done); err != nil {
		close(done)
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(done)
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-links:
				if !ok {
					return
				}
				if podVeth(u.Link) {
					continue
				}
			case u, ok := <-routes:
				if !ok {
					return
				}
				if u.Type != unix.RTM_DELROUTE || u.Protocol != names.RouteProtocol {
					continue
				}
			case <-fire:
				fire = nil
				select {
				case out <- struct{}{}:
				default:
				}
				continue
			}
			// Let a burst of changes (a link going down takes its
			// routes with it) settle into one repair.
			if fire == nil {
				fire = time.After(settle)
			}
		}
	}()
	return out, nil
}

// podVeth reports whether l is a pod's host-side veth, which the plugin
// makes and removes with every pod.
func podVeth(l netlink.Link) bool {
	return l != nil && l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, names.VethPrefix) && l.Attrs().MasterIndex != 0
}
