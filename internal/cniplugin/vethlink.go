package cniplugin

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// vethSpec is one pod's veth pair as createVeth makes it.
type vethSpec struct {
	host, pod       string // names
	hostMAC, podMAC net.HardwareAddr
	mtu             int
	master          int // bridge ifindex
	podNSFd         int
}

// createVeth makes the pair in one netlink request: the host end up and
// already a port of the bridge, the pod end born inside the pod's
// namespace, both with their MACs, MTU and a single queue each way.
//
// The library's LinkAdd would add two round trips (a link lookup, then
// "set master"), and the lookup of a link whose carrier has just changed
// makes the kernel settle it first, which waits for an RCU grace period.
// Asking for one queue up front avoids two more such waits: otherwise the
// kernel makes a queue per CPU and shrinks each end to one.
func createVeth(s vethSpec) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.host)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.mtu))))
	req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, s.hostMAC))
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(s.master))))
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1)))
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1)))

	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.pod))
	peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.mtu)))
	peer.AddRtAttr(unix.IFLA_ADDRESS, s.podMAC)
	peer.AddRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1))
	peer.AddRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1))
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(s.podNSFd)))
	req.AddData(info)

	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("create veth %s (pod end %s): %w", s.host, s.pod, err)
	}
	return nil
}

// deleteLinkByName removes a link by name in one request. Deleting either
// end of a veth removes both.
func deleteLinkByName(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
