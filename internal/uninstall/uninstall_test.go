package uninstall

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/bridge"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
	"github.com/weftnet/weft/internal/testkit/testnet"
	"golang.org/x/sys/unix"
)

// node makes what a Weft node holds, plus things of others' that must
// survive, inside a namespace of the test's own.
func node(t *testing.T) (ns.NetNS, names.Dirs) {
	t.Helper()
	var n ns.NetNS = testnet.NewNS(t, "un")
	err := n.Do(func(ns.NetNS) error {
		br, err := bridge.Ensure(names.Bridge, netip.MustParsePrefix("10.244.3.1/24"), 1450)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: names.VethPrefix + "c0ffee01", MasterIndex: br.Index}, PeerName: "wtopod"}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
		// A pod veth whose name the runtime chose, on Weft's bridge.
		other := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wtoport", MasterIndex: br.Index}, PeerName: "wtopod2"}
		if err := netlink.LinkAdd(other); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: names.VXLANDevice}, VxlanId: names.VNI, Port: names.VXLANPort}
		if err := netlink.LinkAdd(vx); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
		for _, l := range []netlink.Link{br, vx} {
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		vxl, _ := netlink.LinkByName(names.VXLANDevice)
		mac, _ := net.ParseMAC("0e:77:0a:f4:04:01")
		fdb := &netlink.Neigh{LinkIndex: vxl.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: net.IPv4(192, 168, 77, 2), HardwareAddr: mac}
		if err := netlink.NeighAppend(fdb); err != nil {
			return fmt.Errorf("fdb: %w", err)
		}

		// Someone else's bridge, with a route of its own.
		keep := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "wtokeep0"}}
		if err := netlink.LinkAdd(keep); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(keep); err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("192.168.77.1/24")
		if err := netlink.AddrAdd(keep, addr); err != nil {
			return err
		}
		gw := net.IPv4(192, 168, 77, 2)
		routes := []netlink.Route{
			{Dst: cidr("10.244.4.0/24"), Gw: gw, Protocol: names.RouteProtocol},
			{Dst: cidr("10.244.5.0/24"), Gw: gw, Protocol: names.RouteProtocol, Table: 100},
			{Dst: cidr("10.99.0.0/24"), Gw: gw, Protocol: unix.RTPROT_STATIC},
		}
		for _, r := range routes {
			if err := netlink.RouteAdd(&r); err != nil {
				return fmt.Errorf("route %s: %w", r.Dst, err)
			}
		}

		c, err := nftables.New()
		if err != nil {
			return err
		}
		for _, tn := range []string{names.NFTable, "wtokeep"} {
			tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: tn})
			c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		}
		return c.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	o := names.Dirs{
		CNIConf: filepath.Join(root, "net.d"), CNIBin: filepath.Join(root, "bin"),
		Data: filepath.Join(root, "lib", "weft"), Run: filepath.Join(root, "run", "weft"),
	}
	files := map[string]string{
		filepath.Join(o.CNIConf, names.ConfListName): "{}",
		filepath.Join(o.CNIConf, "99-loopback.conf"): "{}",
		filepath.Join(o.CNIBin, names.PluginType):    "binary",
		filepath.Join(o.CNIBin, names.PortmapType):   "binary",
		filepath.Join(o.CNIBin, "portmap"):           "binary",
		filepath.Join(o.CNIBin, "bridge"):            "binary",
		filepath.Join(o.Data, "node.json"):           "{}",
		filepath.Join(o.Data, "ipam", "10.244.3.2"):  "c1",
		filepath.Join(o.Run, names.APISocket):        "",
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n, o
}

func cidr(s string) *net.IPNet {
	_, n, _ := net.ParseCIDR(s)
	return n
}

func TestUninstallRemovesEveryTraceAndOnlyWefts(t *testing.T) {
	n, o := node(t)
	for i := range 2 { // the second run finds nothing and is fine with it
		var removed []string
		err := n.Do(func(ns.NetNS) (err error) {
			removed, err = Run(o)
			return err
		})
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if i == 1 && len(removed) != 0 {
			t.Errorf("second run removed %v", removed)
		}
		if i == 0 && len(removed) < 9 {
			t.Errorf("first run removed only %v", removed)
		}
	}

	err := n.Do(func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		var left []string
		for _, l := range links {
			left = append(left, l.Attrs().Name)
		}
		slices.Sort(left)
		if want := []string{"lo", "wtokeep0"}; !slices.Equal(left, want) {
			t.Errorf("links left %v, want %v", left, want)
		}
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		kept := false
		for _, r := range routes {
			if r.Protocol == names.RouteProtocol {
				t.Errorf("Weft route left: %s", r)
			}
			if r.Dst != nil && r.Dst.String() == "10.99.0.0/24" {
				kept = true
			}
		}
		if !kept {
			t.Error("someone else's static route was removed")
		}
		fdb, err := netlink.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		for _, f := range fdb {
			if f.IP.Equal(net.IPv4(192, 168, 77, 2)) {
				t.Errorf("FDB entry left: %+v", f)
			}
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTables()
		if err != nil {
			return err
		}
		var tnames []string
		for _, tb := range tables {
			tnames = append(tnames, tb.Name)
		}
		if !slices.Equal(tnames, []string{"wtokeep"}) {
			t.Errorf("nftables tables left %v, want only wtokeep", tnames)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, gone := range []string{filepath.Join(o.CNIConf, names.ConfListName), filepath.Join(o.CNIBin, names.PluginType), filepath.Join(o.CNIBin, names.PortmapType), o.Data, o.Run} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", gone, err)
		}
	}
	// The node's own portmap is not Weft's, even though Weft chained it
	// when it had none of its own.
	for _, kept := range []string{filepath.Join(o.CNIConf, "99-loopback.conf"), filepath.Join(o.CNIBin, "bridge"), filepath.Join(o.CNIBin, "portmap")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s of another network was removed: %v", kept, err)
		}
	}
}

func TestUninstallRemovesOnlyWeftsDirs(t *testing.T) {
	conf := t.TempDir()
	dirs := names.Dirs{CNIConf: conf, CNIBin: t.TempDir()}
	// A directory of someone else's, with their data in it, as a mistyped
	// --data-dir would name (/var/lib/kubelet, /var/lib/etcd).
	kubelet := filepath.Join(t.TempDir(), "kubelet")
	write(t, filepath.Join(kubelet, "pods", "p1", "volume"), "data")
	for _, bad := range []string{"", "/", "/var", "relative/dir", "/var/lib", "/usr/lib", "/etc", "/run/", filepath.Dir(conf), kubelet} {
		removed, err := removeDir(bad, dirs)
		if err == nil || !strings.Contains(err.Error(), "refusing") || len(removed) != 0 {
			t.Errorf("dir %q: removed %v, err = %v; want a refusal", bad, removed, err)
		}
	}
	if _, err := os.Stat(filepath.Join(kubelet, "pods", "p1", "volume")); err != nil {
		t.Errorf("a refused directory lost its files: %v", err)
	}

	root := t.TempDir()
	named := filepath.Join(root, "lib", names.NetworkName) // /var/lib/weft
	write(t, filepath.Join(named, "anything"), "x")
	marked := filepath.Join(root, "n3", "data") // a lab node's data dir
	write(t, filepath.Join(marked, nodestate.FileName), "{}")
	write(t, filepath.Join(marked, "ipam", names.NetworkName, "10.244.3.2"), "c1")
	empty := filepath.Join(root, "n3", "run") // a stopped agent's run dir
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, good := range []string{named, marked, empty, filepath.Join(root, "missing")} {
		if _, err := removeDir(good, dirs); err != nil {
			t.Errorf("dir %s: %v", good, err)
		}
		if _, err := os.Lstat(good); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", good, err)
		}
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUninstallLeavesForeignObjectWithWeftsName(t *testing.T) {
	n := testnet.NewNS(t, "un")
	root := t.TempDir()
	o := names.Dirs{CNIConf: root + "/c", CNIBin: root + "/b", Data: root + "/d", Run: root + "/r"}
	err := n.Do(func(ns.NetNS) error {
		// Someone's veth pairs, one end called weft0, one weft.vxlan.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: names.Bridge}, PeerName: "wtopeer"}); err != nil {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: names.VXLANDevice}, PeerName: "wtopeer2"}); err != nil {
			return err
		}
		_, err := Run(o)
		for _, name := range []string{names.Bridge, names.VXLANDevice} {
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "not Weft's") {
				t.Errorf("err = %v, want a note that %s is not Weft's", err, name)
			}
		}
		for _, name := range []string{names.Bridge, names.VXLANDevice} {
			if _, lerr := netlink.LinkByName(name); lerr != nil {
				return fmt.Errorf("the foreign %s: %w", name, lerr)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a foreign link with Weft's name was removed: %v", err)
	}
}
