package ops_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/doctor"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
)

// With the VXLAN backend, doctor checks the neighbours and FDB entries
// too, and the MTU black hole is the classic one: the pods' packets fit,
// the encapsulated ones do not.
func TestDoctorOnVXLAN(t *testing.T) {
	l := up(t, cluster.BackendVXLAN, 2)
	waitReachable(t, l, "n1", "n2")
	t.Run("healthy", func(t *testing.T) {
		rep, ok := runDoctor(t, l, "n1")
		if !ok || len(notOK(rep)) > 0 {
			t.Fatalf("doctor on a healthy VXLAN lab (exit ok=%v): %s", ok, show(rep))
		}
	})
	t.Run("mtu-black-hole", func(t *testing.T) { vxlanBlackHole(t, l) })
	t.Run("drift", func(t *testing.T) { vxlanDrift(t, l) })
}

// The underlay drops every packet it forwards that is longer than 1480
// bytes (an nftables rule on the underlay's bridge, the way a too-small
// link on the way would): a 1450-byte pod packet becomes a 1500-byte VXLAN
// packet there and is lost. (Lowering a bridge port's MTU, as the direct
// case does, drops nothing here: the kernel forwards encapsulated packets
// past the port's MTU check.)
func vxlanBlackHole(t *testing.T, l *lab.Lab) {
	const table = "wtdmtu"
	inNS(t, l.Underlay, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: table})
		accept := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		// meta length > 1480 drop (the length in network byte order, as
		// cmp compares bytes)
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyLEN, Register: 1},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: binaryutil.BigEndian.PutUint32(1480)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		return c.Flush()
	})
	defer inNS(t, l.Underlay, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: table})
		return c.Flush()
	})
	rep, ok := runDoctor(t, l, "n1")
	f := finding(t, rep, "path MTU", "n2")
	if ok || f.Result != doctor.Fail || !strings.Contains(f.Detail, "MTU black hole") || !strings.Contains(f.Fix, "VXLAN") {
		t.Errorf("VXLAN path through an underlay that drops packets over 1480 bytes (exit ok=%v): %+v", ok, f)
	}
	// 1480 bytes on the underlay carry a 1430-byte pod packet and the 50
	// bytes of VXLAN around it.
	if m := largestRE.FindStringSubmatch(f.Detail); m == nil {
		t.Errorf("path MTU to n2 does not say what gets through: %s", f.Detail)
	} else if n, _ := strconv.Atoi(m[1]); n > 1430 || n < 1330 {
		t.Errorf("largest pod packet through a 1480-byte underlay reported as %d bytes: %s", n, f.Detail)
	}
	t.Logf("doctor: %s\n  fix: %s", f.Detail, f.Fix)
}

// Behind the agent's back, n2's FDB entry goes and a neighbour no peer
// needs appears on the VXLAN device: doctor names both, and the missing
// entry's peer.
func vxlanDrift(t *testing.T, l *lab.Lab) {
	n1, err := l.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	n2, err := l.Node("n2")
	if err != nil {
		t.Fatal(err)
	}
	mac := datapath.VTEPMAC(n2.UnderlayIP)
	stale := net.IPv4(10, 244, 250, 0)
	breakIt := func() error {
		vx, err := netlink.LinkByName(names.VXLANDevice)
		if err != nil {
			return err
		}
		err = netlink.NeighDel(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			HardwareAddr: mac, IP: n2.UnderlayIP.AsSlice()})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: stale, HardwareAddr: net.HardwareAddr{0x0e, 0x76, 9, 9, 9, 9}})
	}
	// The agent repairs drift at every resync (30s); one that falls
	// between the breakage and doctor's look leaves nothing to find, so
	// the breakage is made again, up to three times.
	var rep doctor.Report
	var ok bool
	var missing, extra *doctor.Finding
	for try := 0; try < 3 && (missing == nil || extra == nil); try++ {
		inNS(t, n1.Netns, breakIt)
		rep, ok = runDoctor(t, l, "n1")
		missing, extra = nil, nil
		for i, f := range rep.Findings {
			switch {
			case f.Check == "datapath" && strings.HasPrefix(f.Detail, "missing fdb "+mac.String()):
				missing = &rep.Findings[i]
			case f.Check == "datapath" && strings.HasPrefix(f.Detail, "stale neighbour "+stale.String()):
				extra = &rep.Findings[i]
			}
		}
	}
	if missing == nil || extra == nil {
		t.Fatalf("drift not named: %s", show(rep))
	}
	if ok {
		t.Errorf("doctor exited 0 with drift")
	}
	if missing.Peer != "n2" || missing.Result != doctor.Fail || missing.Fix == "" || extra.Fix == "" {
		t.Errorf("drift findings: %+v, %+v", *missing, *extra)
	}
	t.Logf("doctor: %s; %s", missing.Detail, extra.Detail)
}
