package preflight

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nfeval"
	"golang.org/x/sys/unix"
)

// portSpec is a port (or range) the node needs free for its owner and
// open in the firewall.
type portSpec struct {
	lo, hi uint16
	protos []string
	what   string
	// expect names the processes that are meant to hold the port: seeing
	// them means the component already runs here, which is fine.
	expect []string
	// rangeOfServices marks the NodePort range: a process on one of its
	// ports breaks only the Service given that port, so it warns.
	rangeOfServices bool
	note            string
}

func clusterPorts(o Options) []portSpec {
	tcp, udp, both := []string{"tcp"}, []string{"udp"}, []string{"tcp", "udp"}
	kubelet := portSpec{lo: 10250, hi: 10250, protos: tcp, what: "kubelet API", expect: []string{"kubelet"}}
	var specs []portSpec
	if o.Role == ControlPlane {
		specs = []portSpec{
			{lo: 6443, hi: 6443, protos: tcp, what: "Kubernetes API server", expect: []string{"kube-apiserver"}},
			{lo: 2379, hi: 2379, protos: tcp, what: "etcd client", expect: []string{"etcd"}},
			{lo: 2380, hi: 2380, protos: tcp, what: "etcd peer", expect: []string{"etcd"},
				note: "only used between etcd members, when there are several control-plane nodes"},
			kubelet,
			{lo: 10259, hi: 10259, protos: tcp, what: "kube-scheduler", expect: []string{"kube-scheduler"}},
			{lo: 10257, hi: 10257, protos: tcp, what: "kube-controller-manager", expect: []string{"kube-controller", "kube-controller-manager"}},
		}
	} else {
		specs = []portSpec{
			kubelet,
			{lo: 30000, hi: 32767, protos: both, what: "NodePort Services", expect: []string{"kube-proxy"}, rangeOfServices: true},
		}
	}
	return append(specs,
		portSpec{lo: o.VXLANPort, hi: o.VXLANPort, protos: udp, what: "Weft VXLAN", expect: []string{"weft"},
			note: "every node sends pod traffic to the others' VXLAN port when the path is VXLAN"},
		portSpec{lo: o.HealthPort, hi: o.HealthPort, protos: tcp, what: "Weft health", expect: []string{"weft"},
			note: "kubelet probes the agent there"},
		portSpec{lo: o.MetricsPort, hi: o.MetricsPort, protos: tcp, what: "Weft metrics", expect: []string{"weft"},
			note: "Prometheus scrapes it"},
		portSpec{lo: o.ProbePort, hi: o.ProbePort, protos: udp, what: "Weft agent probes", expect: []string{"weft"},
			note: "agents probe each other at their bridge address; only pod-network traffic reaches it"},
	)
}

// legacyPorts were the scheduler's and controller-manager's insecure
// ports; they are reported only when something is seen on them.
var legacyPorts = map[uint16]string{
	10251: "kube-scheduler's insecure port in old Kubernetes releases (current ones serve 10259)",
	10252: "kube-controller-manager's insecure port in old Kubernetes releases (current ones serve 10257)",
}

func protoNum(p string) uint8 {
	if p == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func portChecks(o Options) []Check {
	socks, sockErr := listeners()
	inodes := map[uint64]bool{}
	for _, s := range socks {
		if s.inode != 0 {
			inodes[s.inode] = true
		}
	}
	own := owners(inodes)
	vxlans := vxlanDevices()
	fw, fwErr := nfeval.Load()

	var checks []Check
	if sockErr != nil {
		checks = append(checks, Check{Name: "listening sockets", Result: Warn,
			Detail: fmt.Sprintf("cannot read the sockets in use: %v", sockErr), Fix: "run preflight as root"})
	}
	if fwErr != nil {
		checks = append(checks, Check{Name: "nftables ruleset", Result: Warn,
			Detail: fmt.Sprintf("cannot read the firewall rules: %v", fwErr), Fix: "run preflight as root; without nftables support in the kernel Weft cannot run (see the kernel checks)"})
	}
	holder := func(s socket) string {
		if ow, ok := own[s.inode]; ok && s.inode != 0 {
			return ow.String()
		}
		// No process holds it. A VXLAN device's UDP socket is the kernel's
		// own: it has an inode (sockfs gives every socket one) but sits in
		// no process's fd table. It is bound to the wildcard address, and
		// while it is there nothing else can bind that port.
		if devs := vxlans[s.addr.Port()]; len(devs) > 0 && s.proto == "udp" && s.addr.Addr().IsUnspecified() {
			return vxlanHolder(devs)
		}
		if s.inode == 0 {
			return "the kernel"
		}
		return "a process preflight cannot see"
	}

	for _, spec := range clusterPorts(o) {
		for _, proto := range spec.protos {
			checks = append(checks, portCheck(spec, proto, socks, holder, fw))
		}
	}
	for _, port := range []uint16{10251, 10252} {
		what := legacyPorts[port]
		for _, s := range socks {
			if s.proto == "tcp" && s.addr.Port() == port {
				checks = append(checks, Check{Name: fmt.Sprintf("port %d/tcp (legacy)", port), Result: Warn,
					Detail: fmt.Sprintf("in use by %s on %s: %d was %s", holder(s), s.addr.Addr(), port, what),
					Fix:    "nothing needed by Weft; an old control plane should be upgraded"})
				break
			}
		}
	}
	return checks
}

func portName(spec portSpec, proto string) string {
	if spec.lo == spec.hi {
		return fmt.Sprintf("port %d/%s (%s)", spec.lo, proto, spec.what)
	}
	return fmt.Sprintf("ports %d-%d/%s (%s)", spec.lo, spec.hi, proto, spec.what)
}

func portCheck(spec portSpec, proto string, socks []socket, holder func(socket) string, fw *nfeval.Ruleset) Check {
	c := Check{Name: portName(spec, proto), Result: Pass}
	var details, fixes []string

	// Taken by a process?
	var expected, foreign []string
	for _, s := range socks {
		p := s.addr.Port()
		if s.proto != proto || p < spec.lo || p > spec.hi {
			continue
		}
		h := holder(s)
		where := fmt.Sprintf("%d on %s by %s", p, s.addr.Addr(), h)
		if isExpected(spec, h) {
			expected = append(expected, where)
		} else {
			foreign = append(foreign, where)
		}
	}
	if len(foreign) > 0 {
		if spec.rangeOfServices {
			c.Result = worse(c.Result, Warn)
			details = append(details, fmt.Sprintf("%d port(s) in the range are taken: %s", len(foreign), list(foreign, 5)))
			fixes = append(fixes, "a Service given one of these NodePorts would not work on this node; move the process or reserve the ports from the NodePort range")
		} else {
			c.Result = worse(c.Result, Fail)
			details = append(details, "taken: "+list(foreign, 5))
			fixes = append(fixes, fmt.Sprintf("stop or move what holds port %d: the %s needs it", spec.lo, spec.what))
		}
	}
	if len(expected) > 0 {
		details = append(details, fmt.Sprintf("held as expected on a node where it already runs: %s", list(expected, 3)))
	}

	// Dropped by the firewall?
	if fw != nil {
		res, d, fix := firewallFinding(spec, proto, fw)
		c.Result = worse(c.Result, res)
		if d != "" {
			details = append(details, d)
			fixes = append(fixes, fix)
		}
	}
	if c.Result == Pass && len(details) == 0 {
		details = append(details, "free and not filtered")
	}
	if spec.note != "" {
		details = append(details, spec.note)
	}
	c.Detail = strings.Join(details, "; ")
	c.Fix = strings.Join(fixes, "; ")
	return c
}

// ownVXLAN is the holder of Weft's VXLAN port on a node where the agent
// already runs: its own device, and no other.
var ownVXLAN = "Weft's VXLAN device " + names.VXLANDevice

// vxlanHolder names the VXLAN devices sharing one UDP socket (the kernel
// shares it between devices of one port); any but Weft's own is foreign.
func vxlanHolder(devs []string) string {
	if len(devs) == 1 && devs[0] == names.VXLANDevice {
		return ownVXLAN
	}
	if len(devs) == 1 {
		return fmt.Sprintf("VXLAN device %s, which is not Weft's (%s)", devs[0], names.VXLANDevice)
	}
	return fmt.Sprintf("VXLAN devices %s (Weft's is %s only)", strings.Join(devs, ", "), names.VXLANDevice)
}

func isExpected(spec portSpec, holder string) bool {
	if strings.Contains(holder, "VXLAN device") {
		return holder == ownVXLAN
	}
	for _, e := range spec.expect {
		if strings.HasPrefix(holder, e+" ") {
			return true
		}
	}
	return false
}

// firewallFinding evaluates every port of spec and groups the ports by
// what drops them.
func firewallFinding(spec portSpec, proto string, fw *nfeval.Ruleset) (Result, string, string) {
	hard := map[string][]uint16{}
	soft := map[string][]uint16{}
	for p := int(spec.lo); p <= int(spec.hi); p++ {
		for _, o := range fw.Verdict(protoNum(proto), uint16(p)) {
			switch {
			case o.Dropped && len(o.CondAccept) == 0:
				hard[o.By] = append(hard[o.By], uint16(p))
			case o.Dropped:
				key := fmt.Sprintf("%s, except what %s accepts", o.By, strings.Join(o.CondAccept, " and "))
				soft[key] = append(soft[key], uint16(p))
			default:
				for _, d := range o.CondDrop {
					soft[d] = append(soft[d], uint16(p))
				}
			}
		}
	}
	describe := func(m map[string][]uint16) string {
		var parts []string
		for by, ports := range m {
			parts = append(parts, fmt.Sprintf("%s/%s by %s", portList(ports), proto, by))
		}
		sort.Strings(parts)
		return strings.Join(parts, "; ")
	}
	switch {
	case len(hard) > 0:
		return Fail, "dropped: " + describe(hard),
			fmt.Sprintf("add a rule accepting %s dport %s ahead of what drops it", proto, portList(portsOf(hard)))
	case len(soft) > 0:
		return Warn, "dropped for some traffic: " + describe(soft),
			"make sure the rule's conditions do not cover traffic from the other nodes"
	}
	return Pass, "", ""
}

func portsOf(m map[string][]uint16) []uint16 {
	var all []uint16
	for _, ps := range m {
		all = append(all, ps...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// portList writes sorted ports as "80" or "30000-30010,30020".
func portList(ports []uint16) string {
	var parts []string
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(ports[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ports[i], ports[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func list(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// vxlanDevices maps UDP ports to the VXLAN devices listening there,
// sorted by name. Only a device that is up has its socket open.
func vxlanDevices() map[uint16][]string {
	out := map[uint16][]string{}
	links, err := netlink.LinkList()
	if err != nil {
		return out
	}
	for _, l := range links {
		if vx, ok := l.(*netlink.Vxlan); ok && vx.Attrs().Flags&net.FlagUp != 0 {
			port := vx.Port
			if port == 0 {
				port = 8472 // the kernel's default when none is given
			}
			out[uint16(port)] = append(out[uint16(port)], vx.Name)
		}
	}
	for _, devs := range out {
		sort.Strings(devs)
	}
	return out
}
