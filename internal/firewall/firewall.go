// Package firewall owns Weft's nftables tables (names.NFTable, in the inet
// and the bridge family; see layout.go) and nothing else in nftables: it
// masquerades pod traffic that leaves the cluster CIDR (pod-to-pod traffic
// keeps its source address), accepts forwarding of pod traffic, accepts
// VXLAN only from current peers carrying untagged IPv4 from their own
// pods' addresses, keeps pods from sending to any VXLAN port that is not
// a pod's, and lets a pod send only from its own MAC and IP. It never
// reads or changes another table.
//
// Ensure makes the tables' structure right; when it is not, each table is
// replaced whole in one netlink batch (add table, delete table, add table
// with its chains, sets and rules, and the elements the old sets held),
// which the kernel applies atomically: there is no moment without
// masquerade or without the guards, and rules left by an older Weft never
// linger beside the new ones. SyncPeers and SyncPods keep the sets' elements
// exact (desired, diff, one batch) without touching the rules.
package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/names"
)

// Ensure makes Weft's tables hold exactly the chains, sets and rules for
// clusterCIDR, in the network namespace of the calling thread. It does
// nothing to a table that is already right, and keeps the sets' elements
// of a table it replaces.
func Ensure(clusterCIDR netip.Prefix) error { return EnsureWithPods(clusterCIDR, nil) }

// EnsureWithPods is Ensure, and when it makes the pod guard's table it
// makes it already holding pods(): on a node that runs pods before the
// guard exists (the first install, an upgrade from a Weft without it),
// their packets pass from the guard's first moment, with no gap until
// the next sync adds them.
func EnsureWithPods(clusterCIDR netip.Prefix, pods func() ([]Pod, error)) error {
	if !clusterCIDR.IsValid() || !clusterCIDR.Addr().Is4() {
		return fmt.Errorf("firewall: cluster CIDR %q is not an IPv4 prefix", clusterCIDR)
	}
	clusterCIDR = clusterCIDR.Masked()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, l := range []layout{inetLayout(clusterCIDR), bridgeLayout()} {
		ok, err := inSync(c, l)
		if err != nil {
			return err
		}
		if !ok {
			var seed []nftables.SetElement
			if l.table.Family == nftables.TableFamilyBridge && pods != nil {
				if seed, err = podElements(pods); err != nil {
					return err
				}
			}
			if err := replace(c, l, seed); err != nil {
				return err
			}
		}
	}
	return nil
}

// replace swaps table l.table for layout l in one batch, carrying over the
// elements of the old table's sets of the same name and type; pods seeds
// the pod guard's set.
func replace(c *nftables.Conn, l layout, pods []nftables.SetElement) error {
	keep := map[string][]nftables.SetElement{}
	if old, err := findTable(c, l.table.Family); err != nil {
		return err
	} else if old != nil {
		sets, err := c.GetSets(old)
		if err != nil {
			return fmt.Errorf("list sets of %s: %w", describe(l.table), err)
		}
		for _, s := range sets {
			for _, want := range l.sets {
				if s.Name == want.Name && sameSet(s, want) {
					els, err := c.GetSetElements(s)
					if err != nil {
						return fmt.Errorf("list %s of %s: %w", s.Name, describe(l.table), err)
					}
					keep[s.Name] = els
				}
			}
		}
	}
	if len(pods) > 0 {
		seen := map[string]bool{}
		for _, e := range keep[setPods] {
			seen[string(e.Key)] = true
		}
		for _, e := range pods {
			if !seen[string(e.Key)] {
				keep[setPods] = append(keep[setPods], e)
			}
		}
	}
	c.AddTable(l.table)
	c.DelTable(l.table)
	c.AddTable(l.table)
	for _, ch := range l.chains {
		c.AddChain(ch)
	}
	for _, s := range l.sets {
		if err := c.AddSet(s, keep[s.Name]); err != nil {
			return fmt.Errorf("add set %s to %s: %w", s.Name, describe(l.table), err)
		}
	}
	for _, r := range l.rules {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace %s: %w", describe(l.table), err)
	}
	return nil
}

// InSync reports whether Weft's tables hold exactly the chains, sets and
// rules for clusterCIDR (whatever the sets' elements).
func InSync(clusterCIDR netip.Prefix) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	for _, l := range []layout{inetLayout(clusterCIDR.Masked()), bridgeLayout()} {
		if ok, err := inSync(c, l); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// inSync compares table l.table in the kernel with layout l. Chains are
// compared by what the rules' tags cannot show (a forward chain whose
// policy was set to drop, or a chain moved to another hook, would
// otherwise pass as in sync and never be repaired), rules by their tags.
func inSync(c *nftables.Conn, l layout) (bool, error) {
	t, err := findTable(c, l.table.Family)
	if err != nil || t == nil {
		return false, err
	}
	listed, err := c.ListChainsOfTableFamily(l.table.Family)
	if err != nil {
		return false, fmt.Errorf("list nftables chains: %w", err)
	}
	byName := map[string]*nftables.Chain{}
	for _, ch := range listed {
		if ch.Table.Name == t.Name {
			byName[ch.Name] = ch
		}
	}
	if len(byName) != len(l.chains) {
		return false, nil
	}
	for _, want := range l.chains {
		if have := byName[want.Name]; have == nil || !sameChain(have, want) {
			return false, nil
		}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return false, fmt.Errorf("list sets of %s: %w", describe(l.table), err)
	}
	if len(sets) != len(l.sets) {
		return false, nil
	}
	for _, want := range l.sets {
		found := false
		for _, s := range sets {
			found = found || (s.Name == want.Name && sameSet(s, want))
		}
		if !found {
			return false, nil
		}
	}
	var have []*nftables.Rule
	for _, want := range l.chains {
		rs, err := c.GetRules(t, byName[want.Name])
		if err != nil {
			return false, fmt.Errorf("list rules of %s %s: %w", describe(l.table), want.Name, err)
		}
		have = append(have, rs...)
	}
	if len(have) != len(l.rules) {
		return false, nil
	}
	for i, want := range l.rules {
		if !bytes.Equal(have[i].UserData, want.UserData) || have[i].Chain.Name != want.Chain.Name {
			return false, nil
		}
	}
	return true, nil
}

func sameChain(have, want *nftables.Chain) bool {
	return have.Type == want.Type && samePtr(have.Hooknum, want.Hooknum) &&
		samePtr(have.Priority, want.Priority) && policy(have) == policy(want)
}

func sameSet(have, want *nftables.Set) bool {
	return have.KeyType.Bytes == want.KeyType.Bytes && have.Interval == want.Interval &&
		have.Concatenation == want.Concatenation
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

// Remove deletes Weft's tables, and with them every rule of Weft's, and
// returns what it removed; no table is not an error.
func Remove() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	var removed []string
	var errs []error
	for _, t := range []*nftables.Table{inetTable(), bridgeTable()} {
		if have, err := findTable(c, t.Family); err != nil || have == nil {
			errs = append(errs, err)
			continue
		}
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			if !errors.Is(err, unix.ENOENT) { // else removed by someone else meanwhile
				errs = append(errs, fmt.Errorf("delete %s: %w", describe(t), err))
			}
			continue
		}
		removed = append(removed, describe(t))
	}
	return removed, errors.Join(errs...)
}

// findTable returns Weft's table of family f, nil when there is none.
func findTable(c *nftables.Conn, f nftables.TableFamily) (*nftables.Table, error) {
	ts, err := c.ListTablesOfFamily(f)
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

func describe(t *nftables.Table) string {
	fam := "inet"
	if t.Family == nftables.TableFamilyBridge {
		fam = "bridge"
	}
	return "nftables table " + fam + " " + t.Name
}
