package bridge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netns"
)

// Remove deletes the bridge called name and returns what it removed. No
// such interface is not an error; an interface of that name that is not a
// bridge was not made by Weft and is left alone, with an error saying so.
// The pods' veths stay, detached (see RemovePorts).
func Remove(name string) ([]string, error) {
	br, err := lookup(name)
	if errors.Is(err, errNotFound) {
		return nil, nil
	}
	if errors.Is(err, ErrNotBridge) {
		return nil, fmt.Errorf("%w: not Weft's; left alone", err)
	}
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkDel(br); err != nil {
		if netns.IsGone(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("remove bridge %s: %w", name, err)
	}
	return []string{"bridge " + name}, nil
}

// RemovePorts deletes the pods' host-side veths: those attached to the
// bridge called name, and detached ones named as the plugin names them,
// vethPrefix and then hex digits (a failed ADD's, or one whose bridge was
// removed before). A veth named otherwise, say weft.vxlan, is not a pod's.
// Deleting a veth end deletes its pod-side peer too, so the pods lose
// their network.
func RemovePorts(name, vethPrefix string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	brIndex := -1
	for _, l := range links {
		if l.Attrs().Name == name && l.Type() == "bridge" {
			brIndex = l.Attrs().Index
		}
	}
	var removed []string
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != "veth" || a.Name == name || !(podVethName(a.Name, vethPrefix) || (brIndex > 0 && a.MasterIndex == brIndex)) {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			if !netns.IsGone(err) { // the peer of a veth deleted just before
				errs = append(errs, fmt.Errorf("delete veth %s: %w", a.Name, err))
			}
			continue
		}
		removed = append(removed, "veth "+a.Name)
	}
	return removed, errors.Join(errs...)
}

func podVethName(n, prefix string) bool {
	rest, ok := strings.CutPrefix(n, prefix)
	return ok && rest != "" && strings.Trim(rest, "0123456789abcdef") == ""
}
