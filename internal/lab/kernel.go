package lab

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netns"
)

// KernelState is a node's network state as lines of "key=value" fields:
// links, addresses, main-table routes, static neighbours, bridge and VXLAN
// forwarding entries, and the nftables ruleset. What changes by itself
// (learned neighbours and FDB entries, counters) is left out, so that two
// snapshots are equal when nothing was changed on purpose.
type KernelState struct {
	Lines []string
	NFT   string
}

// String is the whole state, one item a line.
func (k KernelState) String() string {
	return strings.Join(k.Lines, "\n") + "\n" + k.NFT
}

// Mentioning returns the lines with a field whose value is one of vals:
// what a node still holds about a given subnet, address or MAC.
func (k KernelState) Mentioning(vals ...string) []string {
	var out []string
	for _, line := range k.Lines {
		for _, f := range strings.Fields(line) {
			_, v, _ := strings.Cut(f, "=")
			found := false
			for _, want := range vals {
				if want != "" && strings.EqualFold(v, want) {
					found = true
				}
			}
			if found {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// Kernel snapshots the network state of a node (or any lab namespace).
func (l *Lab) Kernel(nsName string) (KernelState, error) {
	var k KernelState
	err := ns.WithNetNSPath(netns.Path(nsName), func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		byIndex := map[int]string{}
		for _, ln := range links {
			byIndex[ln.Attrs().Index] = ln.Attrs().Name
		}
		for _, ln := range links {
			a := ln.Attrs()
			up := a.Flags&unix.IFF_UP != 0
			k.add("link name=%s type=%s mac=%s mtu=%d up=%t master=%s", a.Name, ln.Type(), a.HardwareAddr, a.MTU, up, byIndex[a.MasterIndex])
			if v, ok := ln.(*netlink.Vxlan); ok {
				k.add("vxlan name=%s vni=%d port=%d learning=%t src=%s", a.Name, v.VxlanId, v.Port, v.Learning, v.SrcAddr)
			}
			addrs, err := netlink.AddrList(ln, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, ad := range addrs {
				k.add("addr dev=%s addr=%s", a.Name, ad.IPNet)
			}
		}
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			dst := "default"
			if r.Dst != nil {
				dst = r.Dst.String()
			}
			k.add("route dst=%s gw=%s dev=%s proto=%d scope=%d flags=%d", dst, r.Gw, byIndex[r.LinkIndex], r.Protocol, r.Scope, r.Flags)
		}
		neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0 {
				continue
			}
			k.add("neigh dev=%s ip=%s lladdr=%s state=%d", byIndex[n.LinkIndex], n.IP, n.HardwareAddr, n.State)
		}
		fdb, err := netlink.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, n := range fdb {
			// Learned entries come and go with traffic; keep what was
			// put there on purpose (and the per-port ones of VXLAN).
			if n.State&netlink.NUD_PERMANENT == 0 && n.IP == nil {
				continue
			}
			dst := ""
			if n.IP != nil {
				dst = n.IP.String()
			}
			k.add("fdb dev=%s mac=%s dst=%s state=%d flags=%d", byIndex[n.LinkIndex], n.HardwareAddr, dst, n.State, n.Flags)
		}
		return nil
	})
	if err != nil {
		return k, fmt.Errorf("kernel state of %s: %w", nsName, err)
	}
	sort.Strings(k.Lines)
	out, err := exec.Command("nsenter", "--net="+netns.Path(nsName), "--", "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return k, fmt.Errorf("nft list ruleset in %s: %v: %s", nsName, err, bytes.TrimSpace(out))
	}
	// Counters move with traffic; the rules are what matter.
	k.NFT = nftCounters.ReplaceAllString(string(out), "counter")
	return k, nil
}

var nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

func (k *KernelState) add(format string, args ...any) {
	k.Lines = append(k.Lines, fmt.Sprintf(format, args...))
}

// PathTo says how node from reaches node to's pod subnet, from from's
// routing table: "vxlan", "direct" (via to's underlay address) or "none".
func (l *Lab) PathTo(from, to string) (string, error) {
	a, err := l.Node(from)
	if err != nil {
		return "", err
	}
	b, err := l.Node(to)
	if err != nil {
		return "", err
	}
	k, err := l.Kernel(a.Netns)
	if err != nil {
		return "", err
	}
	for _, line := range k.Lines {
		if !strings.HasPrefix(line, "route dst="+b.Subnet.String()+" ") {
			continue
		}
		switch {
		case strings.Contains(line, " dev=weft.vxlan "):
			return "vxlan", nil
		case strings.Contains(line, " gw="+b.UnderlayIP.String()+" "):
			return "direct", nil
		}
	}
	return "none", nil
}
