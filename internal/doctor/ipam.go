package doctor

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
)

// leak is a lease that no pod holds any more, and why doctor says so.
type leak struct {
	ipam.Lease
	why string
}

// LeakGrace is how old a lease must be before doctor calls it leaked: the
// plugin leases the address first and makes the veth after, so a young
// lease without its veth is most likely an ADD still running, and
// releasing it would hand its address to a second pod.
const LeakGrace = 5 * time.Minute

// now is the clock leases are aged by; tests move it.
var now = time.Now

func grace(o Options) time.Duration {
	if o.LeakGrace == 0 {
		return LeakGrace
	}
	return max(o.LeakGrace, 0)
}

// ipamState is what the lease store and the interfaces say together.
type ipamState struct {
	leases  int
	leaks   []leak
	orphans []string // pod veths on the bridge that no lease accounts for
}

// readIPAM finds addresses that no pod holds any more: a lease whose
// host-side veth is gone (the container went without a CNI DEL), or a
// lease from a subnet the node no longer has (when subnet is known); and
// the reverse, a pod veth on the bridge that no lease accounts for. A
// lease younger than LeakGrace is neither: its ADD may still be running.
func readIPAM(o Options, subnet netip.Prefix) (ipamState, error) {
	var st ipamState
	dir := ipam.Dir(o.DataDir, names.NetworkName)
	leases, err := ipam.OpenForRelease(dir).Leases()
	if err != nil {
		return st, fmt.Errorf("read the leases in %s: %w", dir, err)
	}
	st.leases = len(leases)
	links, err := netlink.LinkList()
	if err != nil {
		return st, fmt.Errorf("list interfaces: %w", err)
	}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	owned := map[string]bool{}
	for _, l := range leases {
		veth := names.HostVethName(l.ContainerID, l.IfName)
		if l.Veth != "" {
			veth = l.Veth // recovered from its veth alone
		}
		owned[veth] = true
		switch {
		case !l.Since.IsZero() && now().Sub(l.Since) < grace(o):
			// Possibly an ADD in flight: never a leak yet.
		case subnet.IsValid() && !subnet.Contains(l.Addr):
			st.leaks = append(st.leaks, leak{l, fmt.Sprintf("outside this node's subnet %s (left from an earlier subnet)", subnet)})
		case byName[veth] == nil:
			st.leaks = append(st.leaks, leak{l, fmt.Sprintf("its host veth %s does not exist: no pod uses it", veth)})
		}
	}
	if br := byName[names.Bridge]; br != nil {
		for _, l := range links {
			a := l.Attrs()
			if l.Type() == "veth" && a.MasterIndex == br.Attrs().Index && strings.HasPrefix(a.Name, names.VethPrefix) && !owned[a.Name] {
				st.orphans = append(st.orphans, a.Name)
			}
		}
	}
	sort.Strings(st.orphans)
	return st, nil
}

func checkIPAM(o Options, subnet netip.Prefix, stateErr error) []Finding {
	st, err := readIPAM(o, subnet)
	if err != nil {
		return []Finding{{Check: "IPAM", Result: Fail, Detail: err.Error(),
			Fix: "the plugin cannot allocate with a store it cannot read: look at the file (a full or read-only disk?)"}}
	}
	release := fmt.Sprintf("the container runtime's CNI GC releases it; to release it now through the plugin's DEL: `weft doctor --release-leaks --data-dir %s --cni-conf-dir %s --cni-bin-dir %s`", o.DataDir, o.ConfDir, o.BinDir)
	var out []Finding
	for _, l := range st.leaks {
		out = append(out, Finding{Check: "IPAM", Result: Fail,
			Detail: fmt.Sprintf("leaked address %s: held by container %s (%s), but %s", l.Addr, l.ContainerID, l.IfName, l.why),
			Fix:    release})
	}
	for _, v := range st.orphans {
		out = append(out, Finding{Check: "IPAM", Result: Warn,
			Detail: fmt.Sprintf("veth %s is on %s but no lease accounts for it: a pod whose address was released without its interface", v, names.Bridge),
			Fix:    "the runtime's CNI GC removes it; or `ip link del " + v + "` once no pod uses it"})
	}
	if len(out) == 0 {
		detail := fmt.Sprintf("%d address(es) leased, each held by a pod with its veth", st.leases)
		if stateErr != nil && !subnet.IsValid() {
			detail += fmt.Sprintf(" (node subnet unknown: %v)", stateErr)
		}
		out = append(out, Finding{Check: "IPAM", Result: OK, Detail: detail})
	}
	sortFindings(out)
	return out
}

func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Result != fs[j].Result {
			return fs[i].Result == Fail
		}
		return fs[i].Detail < fs[j].Detail
	})
}
