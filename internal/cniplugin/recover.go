package cniplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
)

// runtimeCacheDir is where libcni, and so containerd, CRI-O and podman,
// keeps the result of every attachment it added until it deletes it.
var runtimeCacheDir = "/var/lib/cni/results"

// openStore opens the network's address store for an ADD, CHECK or
// STATUS, able to recover a damaged lease file.
func openStore(c *Config) (*ipam.Store, error) {
	s, err := ipam.Open(c.IPAMDir, c.Subnet)
	if err != nil {
		return nil, invalidConfig(err.Error())
	}
	return s.WithRecovery(recovery(c)), nil
}

// recovery is what the store trusts when its lease file is damaged: the
// pods' host veths on the bridge and the runtime's cache.
func recovery(c *Config) ipam.Recovery {
	return ipam.Recovery{
		InUse:    func() ([]ipam.Lease, error) { return inUse(c.Bridge, c.Name, runtimeCacheDir) },
		VethName: names.HostVethName,
	}
}

// inUse lists the addresses pods hold now. A host veth on the bridge is a
// pod attached now, and its pod end's MAC says its address (ADD derives
// the MAC from it). The runtime's cache says which attachment a veth is;
// a cached attachment without its veth is gone (its DEL got as far as the
// veth), so its address is free.
func inUse(bridge, network, cacheDir string) ([]ipam.Lease, error) {
	veths, err := vethAddrs(bridge)
	if err != nil {
		return nil, err
	}
	var out []ipam.Lease
	for _, l := range cachedLeases(cacheDir, network) {
		name := names.HostVethName(l.ContainerID, l.IfName)
		a, ok := veths[name]
		if !ok {
			continue
		}
		if a.IsValid() {
			l.Addr = a // the kernel is newer than any file
		}
		delete(veths, name)
		out = append(out, l)
	}
	for name, a := range veths {
		if a.IsValid() {
			out = append(out, ipam.Lease{Addr: a, Veth: name})
		}
	}
	slices.SortFunc(out, func(a, b ipam.Lease) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}

// vethAddrs maps each pod veth on bridge to its pod's address, or to the
// zero Addr when the pod end's MAC is not one ADD derived.
func vethAddrs(bridge string) (map[string]netip.Addr, error) {
	out := map[string]netip.Addr{}
	br, err := netlink.LinkByName(bridge)
	if isNotFound(err) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != "veth" || a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, names.VethPrefix) {
			continue
		}
		mac, err := peerMAC(a.ParentIndex, a.NetNsID)
		if errors.Is(err, unix.ENODEV) {
			continue // the pod is going away with its veth: not in use
		}
		if err != nil {
			return nil, fmt.Errorf("read the pod end of %s: %w", a.Name, err)
		}
		out[a.Name] = names.PodAddrOfMAC(mac)
	}
	return out, nil
}

// peerMAC reads the MAC of link index in the namespace the host's nsid
// names, without entering it (RTM_GETLINK with IFLA_TARGET_NETNSID).
func peerMAC(index, nsid int) ([]byte, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	if nsid >= 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(nsid))))
	}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, errors.New("no answer")
	}
	l, err := netlink.LinkDeserialize(nil, msgs[0])
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}

// cacheEntry is the part of a libcni cache file recovery reads.
type cacheEntry struct {
	ContainerID string `json:"containerId"`
	IfName      string `json:"ifName"`
	NetworkName string `json:"networkName"`
	Result      struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	} `json:"result"`
}

// maxCacheFile bounds what recovery reads of one cache file: a result is
// a few hundred bytes.
const maxCacheFile = 64 << 10

// cachedLeases reads the attachments of network that the runtime's cache
// holds. The cache is a hint: a missing dir or an unreadable file is
// skipped, never an error.
func cachedLeases(dir, network string) []ipam.Lease {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []ipam.Lease
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), network+"-") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(f, maxCacheFile))
		f.Close()
		if err != nil {
			continue
		}
		if l, ok := parseCacheEntry(b, network); ok {
			out = append(out, l)
		}
	}
	return out
}

// parseCacheEntry reads one cache file: the attachment and its first IPv4
// address, when it is of network and well formed.
func parseCacheEntry(b []byte, network string) (ipam.Lease, bool) {
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil || e.NetworkName != network || e.ContainerID == "" || checkIfName(e.IfName) != nil {
		return ipam.Lease{}, false
	}
	for _, ip := range e.Result.IPs {
		p, err := netip.ParsePrefix(ip.Address)
		if err == nil && p.Addr().Is4() {
			return ipam.Lease{Addr: p.Addr(), ContainerID: e.ContainerID, IfName: e.IfName}, true
		}
	}
	return ipam.Lease{}, false
}
