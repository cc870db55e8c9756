package firewall

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
)

// Peer is what the VXLAN guard knows of a peer: VXLAN datagrams from
// UnderlayIP are accepted when their inner source lies in Subnet.
type Peer struct {
	UnderlayIP netip.Addr
	Subnet     netip.Prefix
}

// Pod is what the pod guard knows of a pod: frames entering the bridge
// from Veth (the host end) must come from MAC and, for IPv4 and ARP,
// from IP.
type Pod struct {
	Veth string
	MAC  net.HardwareAddr
	IP   netip.Addr
}

// Changes counts the set elements one sync added and removed.
type Changes struct{ Added, Removed int }

// SyncPeers makes the VXLAN guard's sets hold exactly peers, in one batch.
// Peers without an IPv4 underlay address or subnet are left out: their
// datagrams are dropped.
func SyncPeers(peers []Peer) (Changes, error) {
	l := inetLayout(anyCIDR)
	want := map[string][]nftables.SetElement{setPeers: nil, setSources: nil}
	for _, p := range peers {
		if !p.UnderlayIP.Is4() || !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() {
			continue
		}
		u := p.UnderlayIP.As4()
		first, last := p.Subnet.Masked().Addr().As4(), lastAddr(p.Subnet).As4()
		want[setPeers] = append(want[setPeers], nftables.SetElement{Key: u[:]})
		want[setSources] = append(want[setSources], nftables.SetElement{
			Key: append(u[:], first[:]...), KeyEnd: append(u[:], last[:]...)})
	}
	return syncSets(l, want)
}

// SyncPods makes the pod guard's set hold exactly the pods that desired
// returns, in one batch. desired is called after the set was read, so
// that an element the CNI plugin added while this ran (after making the
// veth and the lease that desired reads) is never taken for a stale one.
func SyncPods(desired func() ([]Pod, error)) (Changes, error) {
	l := bridgeLayout()
	return syncSetsWith(l, func() (map[string][]nftables.SetElement, error) {
		els, err := podElements(desired)
		if err != nil {
			return nil, err
		}
		return map[string][]nftables.SetElement{setPods: els}, nil
	})
}

// podElements is the pod guard's set elements for the pods list gives.
func podElements(list func() ([]Pod, error)) ([]nftables.SetElement, error) {
	pods, err := list()
	if err != nil {
		return nil, err
	}
	els := make([]nftables.SetElement, 0, len(pods))
	for _, p := range pods {
		k, err := podKey(p)
		if err != nil {
			return nil, err
		}
		els = append(els, nftables.SetElement{Key: k})
	}
	return els, nil
}

// AllowPod adds pod p to the pod guard, for the CNI plugin at ADD: the
// pod can send as soon as its veth is up. Without Weft's bridge table
// (no agent has run on this node yet) there is no guard, and nothing to do.
func AllowPod(p Pod) error {
	k, err := podKey(p)
	if err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	l := bridgeLayout()
	if t, err := findTable(c, l.table.Family); err != nil || t == nil {
		return err
	}
	if err := c.SetAddElements(l.sets[0], []nftables.SetElement{{Key: k}}); err != nil {
		return fmt.Errorf("allow pod %s on %s: %w", p.IP, p.Veth, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("allow pod %s on %s: %w", p.IP, p.Veth, err)
	}
	return nil
}

func podKey(p Pod) ([]byte, error) {
	if len(p.Veth) == 0 || len(p.Veth) >= 16 || len(p.MAC) != 6 || !p.IP.Is4() {
		return nil, fmt.Errorf("pod guard: bad pod %q %s %s", p.Veth, p.MAC, p.IP)
	}
	k := ifname(p.Veth)
	k = append(k, p.MAC...)
	k = append(k, 0, 0) // the MAC's field is padded to 8 bytes
	ip := p.IP.As4()
	return append(k, ip[:]...), nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}

func syncSets(l layout, want map[string][]nftables.SetElement) (Changes, error) {
	return syncSetsWith(l, func() (map[string][]nftables.SetElement, error) { return want, nil })
}

// syncSetsWith reads the elements of l's sets named in the desired map,
// then asks for the desired elements and applies the difference in one
// batch.
func syncSetsWith(l layout, desired func() (map[string][]nftables.SetElement, error)) (Changes, error) {
	var ch Changes
	c, err := nftables.New()
	if err != nil {
		return ch, fmt.Errorf("nftables: %w", err)
	}
	if t, err := findTable(c, l.table.Family); err != nil {
		return ch, err
	} else if t == nil {
		return ch, fmt.Errorf("%s is missing", describe(l.table))
	}
	have := map[string]map[string]nftables.SetElement{}
	for _, s := range l.sets {
		els, err := c.GetSetElements(s)
		if err != nil {
			return ch, fmt.Errorf("list %s of %s: %w", s.Name, describe(l.table), err)
		}
		have[s.Name] = map[string]nftables.SetElement{}
		for _, e := range els {
			if e.IntervalEnd {
				continue
			}
			have[s.Name][elemID(e)] = e
		}
	}
	want, err := desired()
	if err != nil {
		return ch, err
	}
	for _, s := range l.sets {
		w, ok := want[s.Name]
		if !ok {
			continue
		}
		var add, del []nftables.SetElement
		seen := map[string]bool{}
		for _, e := range w {
			id := elemID(e)
			if seen[id] {
				continue
			}
			seen[id] = true
			if _, ok := have[s.Name][id]; !ok {
				add = append(add, e)
			}
		}
		for id, e := range have[s.Name] {
			if !seen[id] {
				del = append(del, e)
			}
		}
		if len(del) > 0 {
			if err := c.SetDeleteElements(s, del); err != nil {
				return ch, fmt.Errorf("remove from %s: %w", s.Name, err)
			}
		}
		if len(add) > 0 {
			if err := c.SetAddElements(s, add); err != nil {
				return ch, fmt.Errorf("add to %s: %w", s.Name, err)
			}
		}
		ch.Added += len(add)
		ch.Removed += len(del)
	}
	if ch.Added+ch.Removed == 0 {
		return ch, nil
	}
	if err := c.Flush(); err != nil {
		return Changes{}, fmt.Errorf("update the sets of %s: %w", describe(l.table), err)
	}
	return ch, nil
}

func elemID(e nftables.SetElement) string {
	return hex.EncodeToString(e.Key) + "-" + hex.EncodeToString(e.KeyEnd)
}
