package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/datapath"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/probe"
)

// maxParallel bounds how many peers are probed at once.
const maxParallel = 16

// bridgeFinding checks that the bridge holds the gateway that probes
// leave from and pods route through.
func bridgeFinding(subnet netip.Prefix) Finding {
	gw := ipam.Gateway(subnet)
	f := Finding{Check: "bridge", Result: Fail,
		Fix: "the agent sets the bridge up and repairs it at its next resync; if it stays broken, its log (and `weft status`) says why"}
	br, err := netlink.LinkByName(names.Bridge)
	if err != nil {
		f.Detail = fmt.Sprintf("bridge %s: %v", names.Bridge, err)
		return f
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		f.Detail = fmt.Sprintf("addresses of %s: %v", names.Bridge, err)
		return f
	}
	has := false
	for _, a := range addrs {
		if a.IP.Equal(net.IP(gw.AsSlice())) {
			has = true
		}
	}
	switch {
	case !has:
		f.Detail = fmt.Sprintf("bridge %s does not hold the subnet's gateway %s: pods have no way out", names.Bridge, gw)
	case br.Attrs().Flags&net.FlagUp == 0:
		f.Detail = fmt.Sprintf("bridge %s is down: pods have no way out", names.Bridge)
	default:
		f.Result, f.Detail, f.Fix = OK, fmt.Sprintf("%s up with gateway %s", names.Bridge, gw), ""
	}
	return f
}

// checkPeers probes every peer's responder over the pod network, then,
// for those that answer, sends a packet of the pod MTU with DF set.
func checkPeers(ctx context.Context, o Options, st agentapi.Status, peers []agentapi.Peer) []Finding {
	if len(peers) == 0 {
		return []Finding{{Check: "peers", Result: OK, Detail: "no peers: this is the only node the agent knows of"}}
	}
	src := ipam.Gateway(st.Subnet)
	out := make([][]Finding, len(peers))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = checkPeer(ctx, o, st, src, p)
		})
	}
	wg.Wait()
	var all []Finding
	for _, fs := range out {
		all = append(all, fs...)
	}
	return all
}

func checkPeer(ctx context.Context, o Options, st agentapi.Status, src netip.Addr, p agentapi.Peer) []Finding {
	reach := Finding{Check: "reachability", Peer: p.Name}
	if p.Refused != "" {
		reach.Check, reach.Result = "peer record", Fail
		reach.Detail = fmt.Sprintf("the agent refused %s's record (%s): %s; nothing is programmed for it", p.Name, p.Refused, p.PathReason)
		reach.Fix = fmt.Sprintf("a record must claim only its own node's subnet lease, inside the cluster CIDR, with the VTEP MAC its underlay address derives: if %s is a real node, check its agent's configuration (cluster CIDR, subnet length, underlay address); if not, remove its record from the datastore", p.Name)
		return []Finding{reach}
	}
	if p.Path == datapath.PathNone {
		reach.Result = Fail
		reach.Detail = fmt.Sprintf("no path to %s's pods (%s): the agent programs nothing for it", p.Subnet, p.PathReason)
		reach.Fix = "fix what the reason names (the peer's record, the underlay routing, or the backend: --backend auto reaches peers off this segment over VXLAN)"
		return []Finding{reach}
	}
	dst := netip.AddrPortFrom(ipam.Gateway(p.Subnet), o.ProbePort)
	var err error
	var rtt float64
	for range o.Tries {
		var took time.Duration
		if took, err = probe.Ping(ctx, src, dst, probe.MinPingSize, o.Timeout); err == nil {
			rtt = float64(took.Microseconds()) / 1000
			break
		}
		if !errors.Is(err, probe.ErrNoReply) {
			break // the kernel said why: retrying will not change it
		}
	}
	via := fmt.Sprintf("%s path via %s", p.Path, p.UnderlayIP)
	if err != nil {
		reach.Result = Fail
		reach.Detail = fmt.Sprintf("pods on %s (%s) are unreachable: probe from %s to its agent at %s: %s", p.Name, p.Subnet, src, dst, explainProbeError(err, o))
		reach.Fix = reachFix(err, st, p)
		mtu := Finding{Check: "path MTU", Peer: p.Name, Result: Warn, Detail: "not measured: the peer does not answer",
			Fix: "fix reachability first"}
		return []Finding{reach, mtu}
	}
	reach.Result = OK
	reach.Detail = fmt.Sprintf("pods on %s (%s) answer over the pod network (%s), RTT %.2fms", p.Name, p.Subnet, via, rtt)
	return []Finding{reach, checkMTU(ctx, o, st, src, dst, p)}
}

func explainProbeError(err error, o Options) string {
	switch {
	case errors.Is(err, probe.ErrNoReply):
		return fmt.Sprintf("no answer to %d probes within %s each", o.Tries, o.Timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the peer's node answered \"port unreachable\": its agent's probe responder is not running"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("no route: %v", err)
	}
	return err.Error()
}

func reachFix(err error, st agentapi.Status, p agentapi.Peer) string {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("the path works but the agent on %s does not answer probes: check it runs there (`weft status` on %s)", p.Name, p.Name)
	}
	under := fmt.Sprintf("the underlay between this node (%s) and %s (%s)", st.UnderlayIP, p.Name, p.UnderlayIP)
	if p.Path == datapath.PathVXLAN {
		return fmt.Sprintf("check %s: the peer's node up, its link up, UDP port %d open both ways in every firewall on the way, and the agent running on %s (`weft peers` there)", under, names.VXLANPort, p.Name)
	}
	return fmt.Sprintf("check %s: the peer's node up, its link up, both on one L2 segment, forwarding of the pod subnets allowed by the firewalls, and the agent running on %s (`weft peers` there)", under, p.Name)
}

// checkMTU sends one packet of the pod MTU with DF set. When it is lost
// while small ones pass, the path is an MTU black hole: it bisects to
// the largest size that passes, so the finding can say what fits.
func checkMTU(ctx context.Context, o Options, st agentapi.Status, src netip.Addr, dst netip.AddrPort, p agentapi.Peer) Finding {
	f := Finding{Check: "path MTU", Peer: p.Name}
	size := st.MTU
	if size < probe.MinPingSize {
		f.Result, f.Detail = Warn, fmt.Sprintf("pod MTU %d is too small to probe", size)
		return f
	}
	overhead, link := 0, "the pods' packets"
	if p.Path == datapath.PathVXLAN {
		overhead, link = cluster.VXLANOverhead, fmt.Sprintf("VXLAN packets (pod MTU + %d bytes of encapsulation)", cluster.VXLANOverhead)
	}
	var err error
	for range o.Tries {
		if _, err = probe.Ping(ctx, src, dst, size, o.Timeout); err == nil || !errors.Is(err, probe.ErrNoReply) {
			break
		}
	}
	var tb *probe.TooBigError
	switch {
	case err == nil:
		f.Result = OK
		f.Detail = fmt.Sprintf("%d-byte packets with DF set (the pod MTU) reach %s", size, p.Name)
		return f
	case errors.As(err, &tb):
		f.Result = Fail
		f.Detail = fmt.Sprintf("this node cannot send %d-byte packets (the pod MTU) with DF set to %s: the kernel knows the path carries at most %d bytes", size, p.Name, tb.MTU)
		f.Fix = fmt.Sprintf("a link on the way to %s carries less than the pod MTU: raise its MTU to at least %d, or set every node's underlay interface MTU to %d so that Weft derives a pod MTU that fits", p.UnderlayIP, size+overhead, underlayFor(st, tb.MTU))
		return f
	case !errors.Is(err, probe.ErrNoReply):
		f.Result, f.Detail = Warn, fmt.Sprintf("could not measure: %v", err)
		return f
	}
	largest, serr := probe.SearchMTU(ctx, src, dst, probe.MinPingSize, size, 1, o.Timeout, 2)
	f.Result = Fail
	f.Detail = fmt.Sprintf("MTU black hole towards %s: %d-byte packets with DF set (the pod MTU) are lost without an ICMP \"fragmentation needed\" coming back, while small ones arrive", p.Name, size)
	if serr == nil {
		f.Detail += fmt.Sprintf("; the largest that gets through is %d bytes", largest)
	} else {
		f.Detail += fmt.Sprintf("; measuring the largest that gets through failed: %v", serr)
		largest = 0
	}
	f.Detail += ". TCP between pods here and there stalls as soon as it sends full-size segments"
	if largest > 0 {
		f.Fix = fmt.Sprintf("the underlay between %s and %s drops %s larger than about %d bytes: raise the MTU of every switch port, bridge and tunnel on the way to at least %d, or set every node's underlay interface MTU to %d so that Weft derives a pod MTU that fits",
			st.UnderlayIP, p.UnderlayIP, link, largest+overhead, size+overhead, underlayFor(st, largest))
	} else {
		f.Fix = fmt.Sprintf("the underlay between %s and %s drops %s of the pod MTU's size: raise the MTU of every switch port, bridge and tunnel on the way to at least %d",
			st.UnderlayIP, p.UnderlayIP, link, size+overhead)
	}
	return f
}

// underlayFor is the underlay interface MTU from which Weft derives a
// pod MTU of podMTU: the same, less the VXLAN overhead when the node's
// backend may encapsulate.
func underlayFor(st agentapi.Status, podMTU int) int {
	return st.Backend.UnderlayMTUFor(podMTU)
}
