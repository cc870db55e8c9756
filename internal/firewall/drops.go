package firewall

import (
	"bytes"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Drops returns, by reason, how many packets Weft's guards dropped since
// their table was (re)made; reasons whose table is missing are left out.
func Drops() (map[string]uint64, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	out := map[string]uint64{}
	for _, l := range []layout{inetLayout(anyCIDR), bridgeLayout()} {
		t, err := findTable(c, l.table.Family)
		if err != nil {
			return nil, err
		}
		if t == nil {
			continue
		}
		for _, ch := range l.chains {
			rs, err := c.GetRules(t, ch)
			if err != nil {
				return nil, fmt.Errorf("list rules of %s %s: %w", describe(t), ch.Name, err)
			}
			for _, r := range rs {
				reason, ok := bytes.CutPrefix(r.UserData, []byte("weft:drop:"))
				if !ok {
					continue
				}
				for _, e := range r.Exprs {
					if n, ok := e.(*expr.Counter); ok {
						out[string(reason)] += n.Packets
					}
				}
			}
		}
	}
	return out, nil
}
