// Package firewall owns Weft's nftables table (family inet, names.NFTable)
// and nothing else in nftables: it masquerades pod traffic that leaves the
// cluster CIDR (pod-to-pod traffic keeps its source address) and accepts
// forwarding of pod traffic. It never reads or changes another table.
//
// The table is always replaced whole, in one netlink batch (add table,
// delete table, add table with its chains and rules), which the kernel
// applies atomically: there is no moment without masquerade, and rules left
// by an older Weft never linger beside the new ones.
package firewall

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

const (
	chainNAT     = "postrouting"
	chainForward = "forward"
)

var multicast = netip.MustParsePrefix("224.0.0.0/4")

func table() *nftables.Table {
	return &nftables.Table{Name: names.NFTable, Family: nftables.TableFamilyINet}
}

// chains returns Weft's two base chains of table t.
func chains(t *nftables.Table) (nat, fwd *nftables.Chain) {
	accept := nftables.ChainPolicyAccept
	nat = &nftables.Chain{Name: chainNAT, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	fwd = &nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	return nat, fwd
}

// sameChain compares what the rules' tags cannot show: a forward chain
// whose policy was set to drop, or a chain moved to another hook, would
// otherwise pass as in sync and never be repaired.
func sameChain(have, want *nftables.Chain) bool {
	return have.Type == want.Type && samePtr(have.Hooknum, want.Hooknum) &&
		samePtr(have.Priority, want.Priority) && policy(have) == policy(want)
}

func samePtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// policy is a base chain's policy; the kernel's default is accept.
func policy(c *nftables.Chain) nftables.ChainPolicy {
	if c.Policy == nil {
		return nftables.ChainPolicyAccept
	}
	return *c.Policy
}

// rules returns the chains' rules for clusterCIDR. Each rule carries a tag
// in its user data that says what it is and for which CIDR, which is how
// InSync recognises a table that is already right.
func rules(t *nftables.Table, nat, fwd *nftables.Chain, cidr netip.Prefix) []*nftables.Rule {
	tag := func(s string) []byte { return []byte("weft:" + s + ":" + cidr.String()) }
	return []*nftables.Rule{
		{Table: t, Chain: nat, UserData: tag("masquerade"), Exprs: concat(
			ipv4(), match(12, cidr, expr.CmpOpEq), match(16, cidr, expr.CmpOpNeq),
			match(16, multicast, expr.CmpOpNeq), []expr.Any{&expr.Masq{}})},
		{Table: t, Chain: fwd, UserData: tag("forward-from-pods"), Exprs: concat(
			ipv4(), match(12, cidr, expr.CmpOpEq), accept())},
		{Table: t, Chain: fwd, UserData: tag("forward-to-pods"), Exprs: concat(
			ipv4(), match(16, cidr, expr.CmpOpEq), accept())},
	}
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ipv4 matches IPv4 packets (the table is inet: it sees IPv6 too).
func ipv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
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
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: net[:]},
	}
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

// Ensure makes Weft's table hold exactly the rules for clusterCIDR, in the
// network namespace of the calling thread. It does nothing when the table
// is already right.
func Ensure(clusterCIDR netip.Prefix) error {
	if !clusterCIDR.IsValid() || !clusterCIDR.Addr().Is4() {
		return fmt.Errorf("firewall: cluster CIDR %q is not an IPv4 prefix", clusterCIDR)
	}
	clusterCIDR = clusterCIDR.Masked()
	if ok, err := InSync(clusterCIDR); err != nil || ok {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := table()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	nat, fwd := chains(t)
	c.AddChain(nat)
	c.AddChain(fwd)
	for _, r := range rules(t, nat, fwd, clusterCIDR) {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables table inet %s: %w", names.NFTable, err)
	}
	return nil
}

// InSync reports whether Weft's table holds exactly the chains and rules
// for clusterCIDR.
func InSync(clusterCIDR netip.Prefix) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	t, err := find(c)
	if err != nil || t == nil {
		return false, err
	}
	listed, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list nftables chains: %w", err)
	}
	byName := map[string]*nftables.Chain{}
	n := 0
	for _, ch := range listed {
		if ch.Table.Name == t.Name {
			byName[ch.Name] = ch
			n++
		}
	}
	nat, fwd := byName[chainNAT], byName[chainForward]
	wantNAT, wantFwd := chains(t)
	if n != 2 || nat == nil || fwd == nil || !sameChain(nat, wantNAT) || !sameChain(fwd, wantFwd) {
		return false, nil
	}
	var have []*nftables.Rule
	for _, ch := range []*nftables.Chain{nat, fwd} {
		rs, err := c.GetRules(t, ch)
		if err != nil {
			return false, fmt.Errorf("list rules of inet %s %s: %w", names.NFTable, ch.Name, err)
		}
		have = append(have, rs...)
	}
	want := rules(t, nat, fwd, clusterCIDR.Masked())
	if len(have) != len(want) {
		return false, nil
	}
	for i := range want {
		if !bytes.Equal(have[i].UserData, want[i].UserData) || have[i].Chain.Name != want[i].Chain.Name {
			return false, nil
		}
	}
	return true, nil
}

// Remove deletes Weft's table; no table is not an error.
func Remove() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if t, err := find(c); err != nil || t == nil {
		return err
	}
	c.DelTable(table())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table inet %s: %w", names.NFTable, err)
	}
	return nil
}

// find returns Weft's table, nil when there is none.
func find(c *nftables.Conn) (*nftables.Table, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == names.NFTable {
			return t, nil
		}
	}
	return nil, nil
}
