package kernelstate

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// nftLines reads the nftables tables, chains, rules and sets of the
// namespace at nsPath through netlink: one line each, counters left out
// (they move with traffic; the rules are what matter).
func nftLines(nsPath string) ([]string, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []string
	for _, t := range tables {
		tn := fmt.Sprintf("%s/%s", family(t.Family), t.Name)
		out = append(out, fmt.Sprintf("nft table=%s", tn))
		sets, err := c.GetSets(t)
		if err != nil {
			return nil, fmt.Errorf("list sets of %s: %w", tn, err)
		}
		for _, s := range sets {
			elems, err := setElements(c, s)
			if err != nil {
				return nil, fmt.Errorf("list elements of set %s in %s: %w", s.Name, tn, err)
			}
			out = append(out, fmt.Sprintf("nft table=%s set=%s elements=%s", tn, s.Name, elems))
		}
		for _, ch := range chains {
			if ch.Table.Name != t.Name || ch.Table.Family != t.Family {
				continue
			}
			out = append(out, fmt.Sprintf("nft table=%s chain=%s %s", tn, ch.Name, chainHook(ch)))
			rules, err := c.GetRules(t, ch)
			if err != nil {
				return nil, fmt.Errorf("list rules of %s %s: %w", tn, ch.Name, err)
			}
			for i, r := range rules {
				out = append(out, fmt.Sprintf("nft table=%s chain=%s rule=%03d %s", tn, ch.Name, i, exprs(r.Exprs)))
			}
		}
	}
	return out, nil
}

// setElements lists a set's elements (and a map's values), sorted. A set
// that the packet path fills (dynamic, or with timeouts) changes with
// traffic, so only that it is such a set is recorded.
func setElements(c *nftables.Conn, s *nftables.Set) (string, error) {
	if s.Dynamic || s.HasTimeout {
		return "(filled-by-traffic)", nil
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		return "", err
	}
	var keys []string
	for _, e := range elems {
		k := fmt.Sprintf("%x", e.Key)
		if len(e.KeyEnd) > 0 {
			k += fmt.Sprintf("-%x", e.KeyEnd)
		}
		if len(e.Val) > 0 {
			k += fmt.Sprintf(":%x", e.Val)
		}
		if e.VerdictData != nil {
			k += fmt.Sprintf(":%d/%s", e.VerdictData.Kind, e.VerdictData.Chain)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ","), nil
}

func chainHook(ch *nftables.Chain) string {
	s := fmt.Sprintf("type=%s", ch.Type)
	if ch.Hooknum != nil {
		s += fmt.Sprintf(" hook=%d", *ch.Hooknum)
	}
	if ch.Priority != nil {
		s += fmt.Sprintf(" prio=%d", *ch.Priority)
	}
	if ch.Policy != nil {
		s += fmt.Sprintf(" policy=%d", *ch.Policy)
	}
	return s
}

func exprs(es []expr.Any) string {
	var parts []string
	for _, e := range es {
		if _, ok := e.(*expr.Counter); ok {
			parts = append(parts, "counter")
			continue
		}
		parts = append(parts, strings.ReplaceAll(fmt.Sprintf("%T%+v", e, e), " ", ","))
	}
	return "exprs=" + strings.Join(parts, ";")
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprint(int(f))
}
