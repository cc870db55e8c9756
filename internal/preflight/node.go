package preflight

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
)

// cniConfCheck finds network configs that a runtime would pick before
// Weft's: containerd and CRI-O take the first file by name in the conf dir.
func cniConfCheck(dir string) Check {
	c := Check{Name: "CNI configs in " + dir}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		c.Result, c.Detail = Pass, "the directory does not exist yet; the agent creates it with "+names.ConfListName
		return c
	}
	if err != nil {
		c.Result, c.Detail = Warn, fmt.Sprintf("cannot read it: %v", err)
		return c
	}
	var confs []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			if !e.IsDir() {
				confs = append(confs, e.Name())
			}
		}
	}
	sort.Strings(confs)
	var before, after []string
	for _, n := range confs {
		switch {
		case n == names.ConfListName:
		case n < names.ConfListName:
			before = append(before, n)
		default:
			after = append(after, n)
		}
	}
	switch {
	case len(before) > 0:
		c.Result = Fail
		c.Detail = fmt.Sprintf("%s sort(s) before %s: the container runtime uses the first config by name, so pods would get %s's network, not Weft's",
			strings.Join(before, ", "), names.ConfListName, before[0])
		c.Fix = "remove the other network's configs (and uninstall that network) or move them out of " + dir
	case len(after) > 0:
		c.Result = Pass
		c.Detail = fmt.Sprintf("%s sort(s) after %s and will be ignored; remove them once Weft runs", strings.Join(after, ", "), names.ConfListName)
	default:
		c.Result, c.Detail = Pass, "no other network configured"
	}
	return c
}

// otherCNIs are interface names other pod networks leave behind.
var otherCNIs = map[string]string{
	"cni0": "flannel or the bridge plugin", "flannel.1": "flannel", "flannel-wg": "flannel",
	"weave": "Weave Net", "vxlan.calico": "Calico", "tunl0": "Calico (IPIP)",
	"cilium_host": "Cilium", "cilium_vxlan": "Cilium", "kube-bridge": "kube-router",
}

func otherCNILinksCheck() Check {
	c := Check{Name: "other pod networks' interfaces", Result: Pass, Detail: "none"}
	links, err := netlink.LinkList()
	if err != nil {
		c.Result, c.Detail = Warn, fmt.Sprintf("cannot list interfaces: %v", err)
		return c
	}
	var found []string
	for _, l := range links {
		if who, ok := otherCNIs[l.Attrs().Name]; ok {
			found = append(found, fmt.Sprintf("%s (%s)", l.Attrs().Name, who))
		}
	}
	if len(found) > 0 {
		sort.Strings(found)
		c.Result = Warn
		c.Detail = "found " + strings.Join(found, ", ") + ": another pod network was installed here; its routes and rules can take pods' traffic"
		c.Fix = "uninstall the other network and delete its interfaces before Weft runs"
	}
	return c
}

// clusterCIDRCheck looks for the node's own routes and addresses inside
// the cluster CIDR: pod addresses there would be unreachable, or would
// hijack the node's own traffic. Weft's own routes and bridge don't count.
func clusterCIDRCheck(cidr netip.Prefix) Check {
	c := Check{Name: "cluster CIDR " + cidr.String(), Result: Pass}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		c.Result, c.Detail = Warn, fmt.Sprintf("cannot list routes: %v", err)
		return c
	}
	ownLinks := map[int]bool{}
	for _, n := range []string{names.Bridge, names.VXLANDevice} {
		if l, err := netlink.LinkByName(n); err == nil {
			ownLinks[l.Attrs().Index] = true
		}
	}
	var clash []string
	for _, r := range routes {
		if r.Dst == nil || r.Protocol == names.RouteProtocol || ownLinks[r.LinkIndex] {
			continue
		}
		p, ok := prefixOf(r.Dst)
		if !ok || p.Bits() == 0 || !p.Overlaps(cidr) {
			continue
		}
		dev := ""
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			dev = " dev " + l.Attrs().Name
		}
		clash = append(clash, fmt.Sprintf("route %s%s", p, dev))
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err == nil {
		for _, a := range addrs {
			if ownLinks[a.LinkIndex] {
				continue
			}
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && cidr.Contains(ip) {
				clash = append(clash, "address "+a.IPNet.String())
			}
		}
	}
	if len(clash) > 0 {
		c.Result = Fail
		c.Detail = "overlaps the node's " + strings.Join(clash, ", ") + ": pod addresses would collide with networks the node already reaches"
		c.Fix = "choose a cluster CIDR (kubeadm --pod-network-cidr, Weft's --cluster-cidr) that no network of the nodes uses"
		return c
	}
	c.Detail = "no route or address of the node overlaps it"
	return c
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

// mtuCheck finds the underlay interface and says what pods' MTU would be
// with VXLAN.
func mtuCheck(underlay string) Check {
	c := Check{Name: "underlay MTU"}
	link, err := underlayLink(underlay)
	if err != nil {
		c.Result, c.Detail = Warn, err.Error()
		c.Fix = "pass --underlay IFACE: the interface other nodes are reached through"
		return c
	}
	mtu := link.Attrs().MTU
	pod := cluster.BackendVXLAN.PodMTU(mtu)
	c.Name = "underlay MTU (" + link.Attrs().Name + ")"
	switch {
	case cluster.CheckPodMTU(pod) != nil:
		c.Result = Fail
		c.Detail = fmt.Sprintf("%d leaves pods %d bytes with VXLAN, below IPv4's minimum of %d", mtu, pod, cluster.MinMTU)
		c.Fix = "raise the underlay's MTU, or run Weft with the host-gw backend only (nodes on one L2 segment)"
	case pod < 1280:
		c.Result = Warn
		c.Detail = fmt.Sprintf("%d leaves pods %d bytes with VXLAN: below 1280, IPv6 in pods cannot work and many applications fragment", mtu, pod)
		c.Fix = "raise the underlay's MTU if the network allows it"
	default:
		c.Result = Pass
		c.Detail = fmt.Sprintf("%d: pods get %d when any peer is reached through VXLAN (%d bytes of encapsulation), %d with the host-gw backend", mtu, pod, cluster.VXLANOverhead, mtu)
	}
	return c
}

func underlayLink(name string) (netlink.Link, error) {
	if name != "" {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("underlay %s: %w", name, err)
		}
		return l, nil
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZero(r.Dst.Mask) {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("default route's interface: %w", err)
			}
			return l, nil
		}
	}
	return nil, errors.New("no default route, so the underlay interface is unknown")
}

func isZero(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}
