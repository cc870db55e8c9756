package ops_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/doctor"
	"github.com/weftnet/weft/internal/firewall/fwtest"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// The VXLAN device has IPv6 off. Turned back on behind the agent's back
// (as the kernel has it for a new device, with a link-local address),
// doctor names it, and the agent turns it off again at its next resync.
func TestDoctorFlagsIPv6OnTheVTEP(t *testing.T) {
	cfg := labtest.Config(t, "fwo")
	cfg.Backend, cfg.Nodes, cfg.PodsPerNode = cluster.BackendVXLAN, 2, 1
	cfg.ReadyTimeout = 45 * time.Second
	l := labtest.Up(t, cfg)
	waitReachable(t, l, "n1", "n2")
	n1, err := l.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	if rep, ok := runDoctor(t, l, "n1"); !ok || len(notOK(rep)) > 0 {
		t.Fatalf("doctor on a healthy VXLAN lab (exit ok=%v): %s", ok, show(rep))
	}
	turnOn := func() error {
		for name, v := range map[string]string{"disable_ipv6": "0", "accept_ra": "1", "autoconf": "1"} {
			path := "/proc/sys/net/ipv6/conf/" + names.VXLANDevice + "/" + name
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				return err
			}
		}
		vx, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		ll := fwtest.LinkLocal(datapath.VTEPMAC(n1.UnderlayIP))
		err = netlink.AddrAdd(vx, &netlink.Addr{IPNet: &net.IPNet{IP: ll.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", ll, names.VXLANDevice, err)
		}
		return nil
	}
	// The agent may repair it between the change and doctor's look:
	// the change is made again, up to three times.
	var found []doctor.Finding
	var ok bool
	for try := 0; try < 3 && len(found) < 2; try++ {
		inNS(t, n1.Netns, turnOn)
		var rep doctor.Report
		rep, ok = runDoctor(t, l, "n1")
		found = nil
		for _, f := range rep.Findings {
			if f.Check == "datapath" && strings.HasPrefix(f.Detail, "wrong device "+names.VXLANDevice+" IPv6") && f.Result == doctor.Fail {
				found = append(found, f)
			}
		}
	}
	if len(found) != 2 || ok {
		t.Fatalf("doctor on a VTEP with IPv6 on (exit ok=%v): %+v", ok, found)
	}
	for _, f := range found {
		t.Logf("doctor: %s\n  fix: %s", f.Detail, f.Fix)
	}
	testnet.Eventually(t, 45*time.Second, "the agent turning IPv6 off again on n1's VTEP", func() error {
		if rep, ok := runDoctor(t, l, "n1"); !ok {
			return fmt.Errorf("doctor: %s", show(rep))
		}
		return nil
	})
}
