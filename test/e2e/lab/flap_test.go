package lab_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// underlayFlap: a node's underlay link goes down and comes back. The
// kernel deletes every route through a link that goes down (host-gw's
// routes to the peers among them) and does not restore them; the agent
// sees the link come back and puts them back at once, well before its
// 30 s resync.
func underlayFlap(t *testing.T, l *lab.Lab, node string) {
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	set := func(up bool) {
		t.Helper()
		err := ns.WithNetNSPath(netns.Path(n.Netns), func(ns.NetNS) error {
			link, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			if up {
				return netlink.LinkSetUp(link)
			}
			return netlink.LinkSetDown(link)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	routes := func() int {
		var k int
		ns.WithNetNSPath(netns.Path(n.Netns), func(ns.NetNS) error {
			link, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			rs, err := netlink.RouteList(link, netlink.FAMILY_V4)
			k = len(rs)
			return err
		})
		return k
	}
	set(false)
	t.Cleanup(func() { set(true) })
	testnet.Eventually(t, 5*time.Second, "the kernel dropping the routes through the down link", func() error {
		if k := routes(); k > 0 {
			return fmt.Errorf("%d routes through eth0", k)
		}
		return nil
	})
	set(true)
	up := time.Now()
	// Well under the agent's 30 s resync: only the event-driven repair
	// can make it.
	labtest.FullMatrix(t, l, 10*time.Second)
	t.Logf("full matrix %s after %s's underlay came back", time.Since(up).Round(time.Millisecond), node)
}
