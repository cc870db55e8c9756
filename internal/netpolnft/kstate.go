package netpolnft

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/netpol"
)

// Rule tags (rule user data) name what each rule is, so that a restarted
// agent and Check can read the kernel's rules back without parsing
// expressions.
const (
	tagFixed = "weft:"
	tagVRule = "allow:"
	tagDrop  = "drop:"
	tagGen   = "gen:"
)

func genTag(g uint32) string { return tagGen + strconv.FormatUint(uint64(g), 10) }

// kstate is what the table holds (or will hold once a batch lands): a
// netpol.State plus the generation and whatever the table holds that no
// State describes.
type kstate struct {
	st  *netpol.State
	gen uint32
	// strays are sets and chains in the table that are neither fixed nor
	// named like a State's; they are deleted.
	straySets, strayChains []string
	// dirty are State chains whose rules in the kernel differ from what
	// their name promises (someone edited them); they are rewritten.
	dirty map[string]bool
	// logSpec is the DropLog spec of every chain, except those in logs
	// (read back from the kernel, where each chain says its own).
	logSpec string
	logs    map[string]string
}

// logOf is the DropLog spec chain name was written with.
func (k *kstate) logOf(name string) string {
	if s, ok := k.logs[name]; ok {
		return s
	}
	return k.logSpec
}

func emptyState() *netpol.State {
	return &netpol.State{AddrSets: map[string][]netip.Addr{}, CIDRSets: map[string][]netpol.AddrRange{},
		TupleSets: map[string][]netpol.Tuple{}, PortSets: map[string][]netpol.PortRange{},
		Chains: map[string]*netpol.Chain{}, Ingress: map[netip.Addr]string{}, Egress: map[netip.Addr]string{}}
}

// chainTags is the tag sequence of a State chain's rules, the form in
// which kernel and desired chains are compared.
func chainTags(c *netpol.Chain) []string {
	tags := make([]string, 0, len(c.Rules)+1)
	for _, r := range c.Rules {
		for _, x := range vruleRules(c.Dir, r) {
			tags = append(tags, x.tag)
		}
	}
	return append(tags, tagDrop+strings.Join(c.Policies, ","))
}

// parseVRule reads a rule's key back (the inverse of VRule.Key).
func parseVRule(key string) (netpol.VRule, error) {
	f := strings.Split(key, ":")
	if len(f) != 4 {
		return netpol.VRule{}, fmt.Errorf("rule tag %q", key)
	}
	kind, err1 := strconv.Atoi(f[0])
	proto, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || kind > int(netpol.TuplePeer) || proto > 255 {
		return netpol.VRule{}, fmt.Errorf("rule tag %q", key)
	}
	return netpol.VRule{Kind: netpol.PeerKind(kind), Set: f[1], Proto: uint8(proto), Ports: f[3]}, nil
}

// chainFromTags rebuilds a State chain from its rules' tags.
func chainFromTags(name string, tags []string) (*netpol.Chain, bool) {
	c := &netpol.Chain{Dir: netpol.In}
	if strings.HasPrefix(name, "eg-") {
		c.Dir = netpol.Out
	}
	if len(tags) == 0 || !strings.HasPrefix(tags[len(tags)-1], tagDrop) {
		return nil, false
	}
	for _, t := range tags[:len(tags)-1] {
		if strings.HasSuffix(t, replySuffix) {
			continue // the second rule of a tuple peer
		}
		key, ok := strings.CutPrefix(t, tagVRule)
		if !ok {
			return nil, false
		}
		r, err := parseVRule(key)
		if err != nil {
			return nil, false
		}
		c.Rules = append(c.Rules, r)
	}
	if p := strings.TrimPrefix(tags[len(tags)-1], tagDrop); p != "" {
		c.Policies = strings.Split(p, ",")
	}
	return c, true
}

func sameTags(a, b []string) bool { return slices.Equal(a, b) }
