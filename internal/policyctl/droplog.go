package policyctl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/nflog"
)

// DefaultDropLog is what the agent logs unless told otherwise: a few
// dropped packets a second per verdict chain, on a group no other
// software is known to use.
var DefaultDropLog = netpolnft.DropLog{Rate: 5, Group: 22342}

// maxLogLines bounds the agent's own log lines about drops per second,
// whatever the number of chains that log: the rest are summed up in one
// line.
const maxLogLines = 20

// logDrops reads the packets the policy table logs and writes one line
// for each: the two ends (pod names where the address is a pod's), the
// protocol and port, and the policies whose verdict chain dropped it. It
// returns when ctx ends or the group cannot be read.
func (c *Controller) logDrops(ctx context.Context, r *nflog.Reader) {
	context.AfterFunc(ctx, func() { r.Close() })
	var (
		names     map[netip.Addr]string // pod addresses, refreshed at most once a second
		namesAt   time.Time
		window    time.Time
		lines     int
		suppress  int
		lostShown bool
	)
	for {
		ps, err := r.Read()
		if errors.Is(err, nflog.ErrLost) {
			if !lostShown {
				c.cfg.Logger.Warn("policy: dropped packets arrived faster than they could be logged; some were not")
				lostShown = true
			}
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				c.cfg.Logger.Error("policy: reading logged drops stopped", "err", err)
			}
			return
		}
		now := time.Now()
		if now.Sub(window) >= time.Second {
			if suppress > 0 {
				c.cfg.Logger.Info("policy: more packets dropped than logged", "not_logged", suppress)
			}
			window, lines, suppress = now, 0, 0
		}
		for _, p := range ps {
			if lines >= maxLogLines {
				suppress++
				continue
			}
			if names == nil || now.Sub(namesAt) >= time.Second {
				names, namesAt = c.cl.podNames(), now
			}
			c.logDrop(p, names)
			lines++
		}
	}
}

// logDrop describes one logged packet.
func (c *Controller) logDrop(p nflog.Packet, names map[netip.Addr]string) {
	f, ok := p.IPv4()
	if !ok {
		return
	}
	end := func(a netip.Addr, port uint16) string {
		s := a.String()
		if port != 0 {
			s = netip.AddrPortFrom(a, port).String()
		}
		if n, ok := names[a]; ok {
			return n + " " + s
		}
		return s
	}
	args := []any{"from", end(f.Src, f.SrcPort), "to", end(f.Dst, f.DstPort), "proto", protoName(f.Proto)}
	if p.Prefix == netpolnft.LogPrefixUnknown {
		c.cfg.Logger.Info("policy: dropped a packet of a local pod that has no verdicts yet", args...)
		return
	}
	c.mu.Lock()
	st := c.last
	c.mu.Unlock()
	var ch *netpol.Chain
	if st != nil {
		ch = st.Chains[p.Prefix]
	}
	if ch == nil {
		// Logged by a chain that a later apply replaced.
		c.cfg.Logger.Info("policy: dropped a packet", append(args, "chain", p.Prefix)...)
		return
	}
	dir, pod := "ingress", f.Dst
	verdicts := st.Ingress
	if ch.Dir == netpol.Out {
		dir, pod, verdicts = "egress", f.Src, st.Egress
	}
	if verdicts[pod] != p.Prefix {
		// A reply: the pod the chain judges is the packet's other end.
		pod = f.Src
		if ch.Dir == netpol.Out {
			pod = f.Dst
		}
	}
	c.cfg.Logger.Info("policy: dropped a packet", append(args, "direction", dir, "pod", end(pod, 0),
		"policies", strings.Join(ch.Policies, ","))...)
}

func protoName(p uint8) string {
	switch p {
	case netpol.TCP:
		return "tcp"
	case netpol.UDP:
		return "udp"
	case netpol.SCTP:
		return "sctp"
	case 1:
		return "icmp"
	}
	return fmt.Sprint(p)
}

// podNames maps every known pod address to namespace/name.
func (c *cluster) podNames() map[netip.Addr]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.Addr]string, len(c.pods))
	for k, p := range c.pods {
		if p.IP.IsValid() && !p.HostNetwork {
			out[p.IP] = k
		}
	}
	return out
}

// openDropLog binds the NFLOG group the table logs to; a failure leaves
// enforcement whole and logging off, and says why.
func (c *Controller) openDropLog() *nflog.Reader {
	if c.cfg.DropLog.Rate == 0 {
		return nil
	}
	r, err := nflog.Open(c.cfg.DropLog.Group, 128)
	if err != nil {
		c.cfg.Logger.Warn("policy: dropped packets will be counted, not logged", "group", c.cfg.DropLog.Group, "err", err)
		return nil
	}
	return r
}
