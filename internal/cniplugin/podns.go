package cniplugin

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// podNS is the pod's network namespace, open, with a netlink handle bound
// to it: the plugin configures the pod without moving any thread into it.
type podNS struct {
	ns ns.NetNS
	h  *netlink.Handle
}

// openPodNS opens CNI_NETNS. A path that is not a network namespace, or
// that is the plugin's own, is an invalid environment (code 4), reported
// before anything is made.
func openPodNS(path string) (*podNS, error) {
	n, err := ns.GetNS(path)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS: %v", err), "")
	}
	// GetNS accepts any namespace file (a mount or PID namespace too);
	// only a network namespace will do.
	if typ, err := unix.IoctlRetInt(int(n.Fd()), unix.NS_GET_NSTYPE); err != nil || typ != unix.CLONE_NEWNET {
		n.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a network namespace", path)
		}
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS: %v", err), "")
	}
	if same, err := sameNS(n); err != nil || same {
		n.Close()
		if err == nil {
			err = fmt.Errorf("%s is the plugin's own network namespace", path)
		}
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS: %v", err), "")
	}
	h, err := netlink.NewHandleAt(vns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		n.Close()
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS: netlink in %s: %v", path, err), "")
	}
	return &podNS{ns: n, h: h}, nil
}

func (p *podNS) Close() {
	p.h.Close()
	p.ns.Close()
}

func sameNS(n ns.NetNS) (bool, error) {
	var pod, self unix.Stat_t
	if err := unix.Fstat(int(n.Fd()), &pod); err != nil {
		return false, err
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), &self); err != nil {
		return false, err
	}
	return pod.Dev == self.Dev && pod.Ino == self.Ino, nil
}
