package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netns"
)

// apiService is the "kubernetes" Service's address, which pods that talk
// to the API server (Weft's agent among them) find in
// KUBERNETES_SERVICE_HOST/PORT. On a real cluster kube-proxy forwards it;
// the lab runs no kube-proxy, so each kubelet node gets one DNAT rule, in
// a table of the lab's own, for the host-network pods that use it.
var apiService = netip.MustParseAddrPort("10.96.0.1:443")

// apiServiceTable is the lab's nftables table in a kubelet node's namespace.
const apiServiceTable = "weft-lab-apiservice"

// forwardAPIService adds, in the node namespace nsName, a DNAT of
// apiService to the API server at endpoint (https://IP:PORT).
func forwardAPIService(nsName, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	to, err := netip.ParseAddrPort(u.Host)
	if err != nil || !to.Addr().Is4() {
		return fmt.Errorf("API server endpoint %q: want https://IPv4:PORT", endpoint)
	}
	if err := routeAPIService(nsName, to.Addr()); err != nil {
		return err
	}
	f, err := os.Open(netns.Path(nsName))
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return err
	}
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: apiServiceTable})
	ch := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: apiService.Addr().AsSlice()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(apiService.Port())},
		&expr.Immediate{Register: 1, Data: to.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: port(to.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("forward %s to %s in %s: %w", apiService, to, nsName, err)
	}
	return nil
}

// routeAPIService routes apiService the way the API server is reached: a
// node's route lookup happens before the DNAT, and lab nodes have no
// default route to carry it (a real node's would).
func routeAPIService(nsName string, apiserver netip.Addr) error {
	h, err := vnetns.GetFromPath(netns.Path(nsName))
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	rs, err := nl.RouteGet(apiserver.AsSlice())
	if err != nil || len(rs) == 0 {
		return fmt.Errorf("no route to the API server %s in %s: %v", apiserver, nsName, err)
	}
	r := &netlink.Route{LinkIndex: rs[0].LinkIndex, Gw: rs[0].Gw,
		Dst: &net.IPNet{IP: apiService.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if r.Gw == nil {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := nl.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s in %s: %w", apiService.Addr(), nsName, err)
	}
	return nil
}
