package netns

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestIsGoneOnlyForObjectsAlreadyGone(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"link lookup", netlink.LinkNotFoundError{}, true},
		{"link removal", unix.ENODEV, true},
		{"route removal", unix.ESRCH, true},
		{"table removal", unix.ENOENT, true},
		{"wrapped", fmt.Errorf("delete veth weft1: %w", unix.ENODEV), true},
		{"not allowed", unix.EPERM, false},
		{"busy", unix.EBUSY, false},
		{"other", errors.New("netlink socket closed"), false},
		{"nil", nil, false},
	} {
		if got := IsGone(c.err); got != c.want {
			t.Errorf("%s: IsGone(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
