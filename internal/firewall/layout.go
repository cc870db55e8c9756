package firewall

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

// Weft's nftables objects. Two tables, both named names.NFTable:
//
//	inet weft     masquerade, forwarding of pod traffic, the VXLAN guard
//	              on input (only current peers, only untagged IPv4 inner
//	              frames, only with an inner source inside the sending
//	              peer's subnet), and the overlay guard: no pod sends to a
//	              VXLAN port outside the pods' addresses
//	bridge weft   the pod guard on every frame that enters weft0 from a
//	              pod's veth: only the pod's own MAC and IP (ARP included)
//
// The pod guard lives in a bridge-family table because only that sees
// every frame a pod sends: frames to another pod on the same bridge never
// reach the inet hooks unless br_netfilter is loaded and switched on, and
// ARP never does. It needs no br_netfilter.
const (
	chainNAT     = "postrouting"
	chainForward = "forward"
	chainInput   = "input"
	chainVXLAN   = "vxlan-in"
	chainPods    = "from-pods"

	// setPeers holds the current peers' underlay addresses.
	setPeers = "vxlan-peers"
	// setSources maps a peer's underlay address to its pod subnet, as a
	// concatenated range: underlay . first-last address of the subnet.
	setSources = "vxlan-sources"
	// setPods holds each pod's host veth . MAC . IP.
	setPods = "pods"
)

// Drop reasons: the label values of the drop counters.
const (
	DropVXLANNotPeer     = "vxlan-not-a-peer"
	DropVXLANInnerSource = "vxlan-inner-source"
	// DropVXLANInnerType: a peer's VXLAN frame whose inner EtherType the
	// guard does not check (a VLAN tag, ARP, IPv6, a frame too short).
	DropVXLANInnerType = "vxlan-inner-type"
	// DropPodVXLAN: a pod's datagram to a VXLAN port of anything that is
	// not a pod (a node, the underlay, the world).
	DropPodVXLAN      = "pod-vxlan"
	DropSpoofedSource = "spoofed-source"
	DropSpoofedARP    = "spoofed-arp"
	DropNotIPv4       = "pod-not-ipv4"
)

// DropReasons lists every drop reason, so that each exists from the start.
var DropReasons = []string{DropVXLANNotPeer, DropVXLANInnerSource, DropVXLANInnerType, DropPodVXLAN,
	DropSpoofedSource, DropSpoofedARP, DropNotIPv4}

var multicast = netip.MustParsePrefix("224.0.0.0/4")

// Registers: a concatenation is loaded into consecutive 32-bit registers
// starting at NFT_REG32_00 (the same storage as NFT_REG_1); each field
// takes its size rounded up to 4 bytes (ifname 16, ether 8, ipv4 4).
const (
	reg1       = 1                     // NFT_REG_1
	regAfterIf = unix.NFT_REG32_00 + 4 // after a 16-byte ifname
	regAfterMA = unix.NFT_REG32_00 + 6 // after an ifname and a MAC
	regAfterIP = unix.NFT_REG32_00 + 1 // after an IPv4 address
	vxlanInner = 8 + 8 + 14            // UDP, VXLAN and inner Ethernet headers
)

// layout is one table as Weft wants it: its chains with their rules, and
// its sets. The rules' user data tags are what InSync compares.
type layout struct {
	table  *nftables.Table
	chains []*nftables.Chain
	rules  []*nftables.Rule
	sets   []*nftables.Set
}

func inetTable() *nftables.Table {
	return &nftables.Table{Name: names.NFTable, Family: nftables.TableFamilyINet}
}

func bridgeTable() *nftables.Table {
	return &nftables.Table{Name: names.NFTable, Family: nftables.TableFamilyBridge}
}

func tag(s string, cidr netip.Prefix) []byte { return []byte("weft:" + s + ":" + cidr.String()) }

// dropTag marks the rule whose counter counts reason's drops.
func dropTag(reason string) []byte { return []byte("weft:drop:" + reason) }

var (
	peersType   = nftables.TypeIPAddr
	sourcesType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	podsType    = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr)
)

// inetLayout is the inet table for cidr.
//
// The overlay guard comes first in forward and input. A pod may send to a
// VXLAN port of another pod (that is some application's traffic, and it
// keeps the pod's address), but never to a VXLAN port of anything else:
// toward another node's underlay address its datagram would be
// masqueraded to this node's address and taken by that node's VTEP as
// this node's overlay traffic, with an inner packet the pod wrote (any
// source of this node's subnet, past every NetworkPolicy). Forward drops
// it before postrouting masquerades it; input drops a pod's datagram to
// this node's own VTEP (any of its addresses: the VXLAN socket listens on
// all of them), so that no pod, of this node or another, ever reaches a
// VTEP. Pods are told by their source address, inside the cluster CIDR:
// VXLAN between nodes always comes from an underlay address.
func inetLayout(cidr netip.Prefix) layout {
	t := inetTable()
	accept := nftables.ChainPolicyAccept
	nat := &nftables.Chain{Name: chainNAT, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	fwd := &nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	in := &nftables.Chain{Name: chainInput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	vx := &nftables.Chain{Name: chainVXLAN, Table: t}
	peers := &nftables.Set{Table: t, Name: setPeers, KeyType: peersType}
	sources := &nftables.Set{Table: t, Name: setSources, KeyType: sourcesType, Interval: true, Concatenation: true}
	return layout{
		table:  t,
		chains: []*nftables.Chain{nat, fwd, in, vx},
		sets:   []*nftables.Set{peers, sources},
		rules: []*nftables.Rule{
			{Table: t, Chain: nat, UserData: tag("masquerade", cidr), Exprs: concat(
				ipv4(), match(12, cidr, expr.CmpOpEq), match(16, cidr, expr.CmpOpNeq),
				match(16, multicast, expr.CmpOpNeq), []expr.Any{&expr.Masq{}})},
			{Table: t, Chain: fwd, UserData: dropTag(DropPodVXLAN), Exprs: concat(
				ipv4(), match(12, cidr, expr.CmpOpEq), match(16, cidr, expr.CmpOpNeq), toVXLANPort(),
				counted(expr.VerdictDrop))},
			{Table: t, Chain: fwd, UserData: tag("forward-from-pods", cidr), Exprs: concat(
				ipv4(), match(12, cidr, expr.CmpOpEq), verdict(expr.VerdictAccept))},
			{Table: t, Chain: fwd, UserData: tag("forward-to-pods", cidr), Exprs: concat(
				ipv4(), match(16, cidr, expr.CmpOpEq), verdict(expr.VerdictAccept))},
			{Table: t, Chain: in, UserData: dropTag(DropPodVXLAN), Exprs: concat(
				ipv4(), match(12, cidr, expr.CmpOpEq), toVXLANPort(), counted(expr.VerdictDrop))},
			// Every VXLAN datagram addressed to this node, whatever its
			// destination address: the socket listens on all of them.
			{Table: t, Chain: in, UserData: tag("vxlan", cidr), Exprs: concat(
				ipv4(), toVXLANPort(), jump(chainVXLAN))},
			{Table: t, Chain: vx, UserData: dropTag(DropVXLANNotPeer), Exprs: concat(
				[]expr.Any{
					&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
					&expr.Lookup{SourceRegister: reg1, SetName: setPeers, SetID: peers.ID, Invert: true},
				}, counted(expr.VerdictDrop))},
			// Only untagged IPv4 inner frames are let in, and only with
			// an inner source in the subnet of the peer that sent the
			// datagram (outer source . inner source). Each inner
			// EtherType the guard takes has its own pair of rules (its
			// sources, then its drop); every other frame is dropped: an
			// 802.1Q tag (even VID 0, which the kernel strips and then
			// delivers what it wraps), ARP (Weft's neighbours are
			// static), IPv6, anything too short to read.
			{Table: t, Chain: vx, UserData: tag("vxlan-ipv4-peer-source", cidr), Exprs: concat(
				innerEtherType(unix.ETH_P_IP), []expr.Any{
					&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
					&expr.Payload{DestRegister: regAfterIP, Base: expr.PayloadBaseTransportHeader, Offset: vxlanInner + 12, Len: 4},
					&expr.Lookup{SourceRegister: reg1, SetName: setSources, SetID: sources.ID},
					&expr.Verdict{Kind: expr.VerdictReturn},
				})},
			{Table: t, Chain: vx, UserData: dropTag(DropVXLANInnerSource), Exprs: concat(
				innerEtherType(unix.ETH_P_IP), counted(expr.VerdictDrop))},
			{Table: t, Chain: vx, UserData: dropTag(DropVXLANInnerType), Exprs: counted(expr.VerdictDrop)},
		},
	}
}

// toVXLANPort matches UDP to names.VXLANPort.
func toVXLANPort() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: be16(names.VXLANPort)},
	}
}

// innerEtherType matches a VXLAN datagram whose inner Ethernet frame has
// EtherType p right after its MACs: the frame's own type, not one behind
// a VLAN tag.
func innerEtherType(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: vxlanInner - 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: be16(p)},
	}
}

// bridgeLayout is the bridge table: every frame that enters a bridge from
// a pod's veth (a port named with names.VethPrefix) must carry that pod's
// MAC and IP; a veth with no element in the pods set (one the guard does
// not know yet) sends nothing. Frames the node sends to pods, and frames
// from other ports, are not looked at.
func bridgeLayout() layout {
	t := bridgeTable()
	accept := nftables.ChainPolicyAccept
	ch := &nftables.Chain{Name: chainPods, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	pods := &nftables.Set{Table: t, Name: setPods, KeyType: podsType, Concatenation: true}
	none := netip.Prefix{}
	lookup := func(macBase expr.PayloadBase, macOff uint32, ipOff uint32) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Payload{DestRegister: regAfterIf, Base: macBase, Offset: macOff, Len: 6},
			&expr.Payload{DestRegister: regAfterMA, Base: expr.PayloadBaseNetworkHeader, Offset: ipOff, Len: 4},
			&expr.Lookup{SourceRegister: reg1, SetName: setPods, SetID: pods.ID},
		}
	}
	return layout{
		table:  t,
		chains: []*nftables.Chain{ch},
		sets:   []*nftables.Set{pods},
		rules: []*nftables.Rule{
			// Only pods' veths: a compare of the name's prefix, like
			// iifname "weft*" (meta ibrname would be exact, but needs
			// nft_meta_bridge, which not every kernel has).
			{Table: t, Chain: ch, UserData: tag("not-a-pod", none), Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte(names.VethPrefix)},
				&expr.Verdict{Kind: expr.VerdictAccept},
			}},
			{Table: t, Chain: ch, UserData: tag("pod-ipv4", none), Exprs: concat(
				ethertype(unix.ETH_P_IP), lookup(expr.PayloadBaseLLHeader, 6, 12), verdict(expr.VerdictAccept))},
			// ARP: the frame's source MAC and the sender MAC both the
			// pod's, the sender IP the pod's.
			{Table: t, Chain: ch, UserData: tag("pod-arp", none), Exprs: concat(
				ethertype(unix.ETH_P_ARP), lookup(expr.PayloadBaseLLHeader, 6, 14),
				lookup(expr.PayloadBaseNetworkHeader, 8, 14), verdict(expr.VerdictAccept))},
			{Table: t, Chain: ch, UserData: dropTag(DropSpoofedSource), Exprs: concat(
				ethertype(unix.ETH_P_IP), counted(expr.VerdictDrop))},
			{Table: t, Chain: ch, UserData: dropTag(DropSpoofedARP), Exprs: concat(
				ethertype(unix.ETH_P_ARP), counted(expr.VerdictDrop))},
			// Weft's pods are IPv4 only: IPv6, VLAN tags and the rest
			// leave no pod.
			{Table: t, Chain: ch, UserData: dropTag(DropNotIPv4), Exprs: counted(expr.VerdictDrop)},
		},
	}
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ipv4 matches IPv4 packets (the inet table sees IPv6 too).
func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ethertype matches a bridged frame's EtherType.
func ethertype(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: be16(p)},
	}
}

// match compares the IPv4 address at offset (12 source, 16 destination)
// of the network header with prefix p.
func match(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	mask := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	net := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: reg1, Data: net[:]},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// counted counts what reaches the verdict k: the drop counters that
// metrics read (see Drops).
func counted(k expr.VerdictKind) []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: k}}
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// ifname is an interface name as the kernel stores it (IFNAMSIZ bytes).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// anyCIDR stands for the cluster CIDR where only the inet table's chains
// and sets matter, not its rules.
var anyCIDR = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
