package netns

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	return netlink.LinkSetUp(l)
}

// IsGone reports that a netlink lookup or removal failed only because its
// object was already gone: a link lookup says LinkNotFoundError, a link
// removal ENODEV, a route removal ESRCH, an nftables table removal ENOENT.
// Removers that can run twice, or race the kernel deleting a veth's peer,
// treat these as done rather than as failures.
func IsGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT)
}
