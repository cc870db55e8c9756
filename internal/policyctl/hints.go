package policyctl

import (
	"net/netip"
	"time"

	"github.com/weftnet/weft/internal/cnievents"
)

// Address hints close the window between a pod's ADD and the moment the
// kubelet writes status.podIP (most of a second): without them, the
// pod's address has no verdicts in that window, so while any policy
// exists the table drops everything to and from it, allowed or not. The
// CNI plugin reports the address it gave at ADD; the controller uses it
// for that pod until the status carries one.
//
// Nothing in a hint is trusted that the cluster can say otherwise: it
// must be an IPv4 address in this node's pod subnets, held by no pod
// whose status claims it, for a pod bound to this node (or not yet seen:
// the informer may lag the kubelet) with no address in its status and
// the same UID. It goes when the status carries an address, when the
// pod is deleted or ends, at the DEL of its container, and after
// hintTTL in any case.

// hintTTL bounds a hint's life: the kubelet reports a pod's address
// within seconds of its ADD, so an older hint is one nobody needs.
const hintTTL = 2 * time.Minute

// maxHints bounds the hints kept (a node's subnet holds a few hundred
// pods): a flood of events cannot grow the agent without end.
const maxHints = 1024

// Why a hint was refused, the label of weft_policy_address_hints_total.
const (
	hintAccepted     = "accepted"
	hintMalformed    = "malformed"
	hintOutside      = "outside-node-subnets"
	hintForeignNode  = "pod-on-another-node"
	hintHostNetwork  = "host-network-pod"
	hintAddressTaken = "address-taken"
	hintTooMany      = "too-many"
)

type hint struct {
	uid, containerID string
	addr             netip.Addr
	at               time.Time
}

// CNIEvent takes the plugin's report of an ADD or DEL (the agent hands
// it every event): an ADD's address becomes the pod's until the API
// server reports one, and the table is updated at once. It never blocks
// for long: the agent calls it from the socket's reader.
func (c *Controller) CNIEvent(ev cnievents.Event) {
	if ev.Pod == nil {
		return
	}
	p := *ev.Pod
	switch {
	case ev.Verb == "ADD" && ev.OK && p.IP != "":
		result := c.cl.hint(p, c.cfg.NodeName, c.cfg.NodeCIDRs)
		c.metrics.hints.WithLabelValues(result).Inc()
		if result != hintAccepted {
			c.cfg.Logger.Warn("policy: address reported by the CNI plugin refused", "pod", key(p.Namespace, p.Name),
				"container", p.ContainerID, "ip", p.IP, "why", result)
			return
		}
	case ev.Verb == "DEL":
		if !c.cl.forgetHint(key(p.Namespace, p.Name), p.ContainerID) {
			return
		}
	default:
		return
	}
	c.signal()
}

// hint records p's address for its pod, or says why not.
func (c *cluster) hint(p cnievents.Pod, node string, cidrs []netip.Prefix) string {
	addr, err := netip.ParseAddr(p.IP)
	if err != nil || !addr.Is4() || p.Namespace == "" || p.Name == "" || p.ContainerID == "" {
		return hintMalformed
	}
	if !inAny(cidrs, addr) {
		return hintOutside
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.pruneHints(now)
	pk := key(p.Namespace, p.Name)
	known, seen := c.pods[pk]
	if seen {
		switch {
		case known.Node != "" && known.Node != node:
			return hintForeignNode
		case known.HostNetwork:
			return hintHostNetwork
		}
	}
	for k, other := range c.pods {
		if k != pk && other.IP == addr {
			return hintAddressTaken
		}
	}
	if _, ok := c.hints[pk]; !ok && len(c.hints) >= maxHints {
		return hintTooMany
	}
	// The node's IPAM gives an address to one attachment at a time: an
	// older hint for the same address is one whose DEL was lost.
	for k, h := range c.hints {
		if k != pk && h.addr == addr {
			delete(c.hints, k)
		}
	}
	c.hints[pk] = hint{uid: p.UID, containerID: p.ContainerID, addr: addr, at: now}
	return hintAccepted
}

// forgetHint drops the hint of pod pk if the container it names is cid,
// reporting whether there was one.
func (c *cluster) forgetHint(pk, cid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.hints[pk]; ok && h.containerID == cid {
		delete(c.hints, pk)
		return true
	}
	return false
}

// dropHint drops pk's hint unless it is for another pod of that name (a
// different UID). c.mu is held.
func (c *cluster) dropHint(pk, uid string) {
	if h, ok := c.hints[pk]; ok && (h.uid == "" || uid == "" || h.uid == uid) {
		delete(c.hints, pk)
	}
}

func (c *cluster) pruneHints(now time.Time) {
	for k, h := range c.hints {
		if now.Sub(h.at) > hintTTL {
			delete(c.hints, k)
		}
	}
}

// hintedAddrs is the address each pod of node without one in its status
// takes from its hint, checked again against the cluster as it is now.
// c.mu is held.
func (c *cluster) hintedAddrs(node string, cidrs []netip.Prefix) map[string]netip.Addr {
	c.pruneHints(c.now())
	if len(c.hints) == 0 {
		return nil
	}
	claimed := map[netip.Addr]bool{}
	for _, p := range c.pods {
		if p.IP.IsValid() {
			claimed[p.IP] = true
		}
	}
	out := map[string]netip.Addr{}
	for _, k := range sortedKeys(c.hints) {
		h := c.hints[k]
		p, ok := c.pods[k]
		if !ok || p.IP.IsValid() || p.Node != node || p.HostNetwork || claimed[h.addr] || !inAny(cidrs, h.addr) {
			continue
		}
		if uid := c.uids[k]; h.uid != "" && uid != "" && h.uid != uid {
			continue // meant for the next pod of this name
		}
		claimed[h.addr] = true
		out[k] = h.addr
	}
	return out
}

func inAny(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
