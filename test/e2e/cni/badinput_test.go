package cni_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

// exec runs weft-cni in the node's namespace with exactly env (no
// inherited CNI_ variables) and stdin, as a runtime would.
func (n *node) exec(env map[string]string, stdin string) (stdout []byte, err error) {
	cmd := exec.Command(filepath.Join(n.binDir, "weft-cni"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err = n.do(cmd.Run)
	return out.Bytes(), err
}

// Every bad input gets a CNI error object with the spec's code on stdout,
// a non-zero exit, and leaves no veth and no lease behind.
func TestBadInputGetsTheRightErrorAndLeavesNothing(t *testing.T) {
	n := newNode(t)
	pod := newPod(t)
	good := string(n.netConf("1.1.0", "10.99.30.0/24", nil))
	with := func(extra map[string]any) string { return string(n.netConf("1.1.0", "10.99.30.0/24", extra)) }
	notNS := filepath.Join(t.TempDir(), "not-a-netns")
	os.WriteFile(notNS, nil, 0o600)

	// CNI_IFNAME already taken inside the pod by an interface that is not
	// weft's.
	takenPod := newPod(t)
	if err := inNS(takenPod, func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "eth0"
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "wtcpeer0"})
	}); err != nil {
		t.Fatal(err)
	}
	// The bridge name taken in the node by a veth.
	notBridge := randName(t)
	if err := n.do(func() error {
		la := netlink.NewLinkAttrs()
		la.Name = notBridge
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: notBridge + "p"})
	}); err != nil {
		t.Fatal(err)
	}

	env := func(over map[string]string) map[string]string {
		e := map[string]string{
			"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "bad-input", "CNI_NETNS": pod,
			"CNI_IFNAME": "eth0", "CNI_PATH": n.binDir,
		}
		for k, v := range over {
			if v == "" {
				delete(e, k)
			} else {
				e[k] = v
			}
		}
		return e
	}
	cases := []struct {
		name  string
		env   map[string]string
		stdin string
		code  uint
	}{
		{"malformed JSON", env(nil), `{"cniVersion": "1.1.0", "name": `, types.ErrDecodingFailure},
		{"unknown cniVersion", env(nil), with(map[string]any{"cniVersion": "9.9.9"}), types.ErrIncompatibleCNIVersion},
		{"garbage cniVersion", env(nil), with(map[string]any{"cniVersion": "one"}), types.ErrIncompatibleCNIVersion},
		{"missing CNI_COMMAND", env(map[string]string{"CNI_COMMAND": ""}), good, types.ErrInvalidEnvironmentVariables},
		{"unknown CNI_COMMAND", env(map[string]string{"CNI_COMMAND": "FROB"}), good, types.ErrInvalidEnvironmentVariables},
		{"missing CNI_CONTAINERID", env(map[string]string{"CNI_CONTAINERID": ""}), good, types.ErrInvalidEnvironmentVariables},
		{"missing CNI_NETNS", env(map[string]string{"CNI_NETNS": ""}), good, types.ErrInvalidEnvironmentVariables},
		{"missing CNI_IFNAME", env(map[string]string{"CNI_IFNAME": ""}), good, types.ErrInvalidEnvironmentVariables},
		{"netns that does not exist", env(map[string]string{"CNI_NETNS": "/run/netns/wtc-does-not-exist"}), good, types.ErrInvalidEnvironmentVariables},
		{"netns that is not a netns", env(map[string]string{"CNI_NETNS": notNS}), good, types.ErrInvalidEnvironmentVariables},
		{"netns that is the plugin's own", env(map[string]string{"CNI_NETNS": "/run/netns/" + n.name}), good, types.ErrInvalidEnvironmentVariables},
		{"interface name too long", env(map[string]string{"CNI_IFNAME": "eth0123456789abcdef"}), good, types.ErrInvalidEnvironmentVariables},
		{"missing network name", env(nil), with(map[string]any{"name": nil}), types.ErrInvalidNetworkConfig},
		{"subnet not a prefix", env(nil), with(map[string]any{"subnet": "banana"}), types.ErrInvalidNetworkConfig},
		{"subnet /33", env(nil), with(map[string]any{"subnet": "10.99.30.0/33"}), types.ErrInvalidNetworkConfig},
		{"subnet too small", env(nil), with(map[string]any{"subnet": "10.99.30.0/31"}), types.ErrInvalidNetworkConfig},
		{"subnet with host bits", env(nil), with(map[string]any{"subnet": "10.99.30.7/24"}), types.ErrInvalidNetworkConfig},
		{"IPv6 subnet", env(nil), with(map[string]any{"subnet": "fd00:99::/64"}), types.ErrInvalidNetworkConfig},
		{"mtu too small", env(nil), with(map[string]any{"mtu": 10}), types.ErrInvalidNetworkConfig},
		{"bridge name too long", env(nil), with(map[string]any{"bridge": "weft0123456789abc"}), types.ErrInvalidNetworkConfig},
		{"relative dataDir", env(nil), with(map[string]any{"dataDir": "var/lib/weft"}), types.ErrInvalidNetworkConfig},
		{"dataDir climbing out with ..", env(nil), with(map[string]any{"dataDir": n.dataDir + "/../../etc"}), types.ErrInvalidNetworkConfig},
		{"subnet 0.0.0.0/0", env(nil), with(map[string]any{"subnet": "0.0.0.0/0"}), types.ErrInvalidNetworkConfig},
		{"subnet 128.0.0.0/1", env(nil), with(map[string]any{"subnet": "128.0.0.0/1"}), types.ErrInvalidNetworkConfig},
		{"subnet shorter than /8", env(nil), with(map[string]any{"subnet": "10.0.0.0/7"}), types.ErrInvalidNetworkConfig},
		{"loopback subnet", env(nil), with(map[string]any{"subnet": "127.0.0.0/8"}), types.ErrInvalidNetworkConfig},
		{"link-local subnet", env(nil), with(map[string]any{"subnet": "169.254.0.0/16"}), types.ErrInvalidNetworkConfig},
		{"multicast subnet", env(nil), with(map[string]any{"subnet": "239.0.0.0/24"}), types.ErrInvalidNetworkConfig},
		{"netns that is a mount namespace", env(map[string]string{"CNI_NETNS": "/proc/self/ns/mnt"}), good, types.ErrInvalidEnvironmentVariables},
		{"netns path with ..", env(map[string]string{"CNI_NETNS": pod + "/../" + filepath.Base(pod)}), good, types.ErrInvalidEnvironmentVariables},
		{"config larger than 1 MiB", env(nil), good + strings.Repeat(" ", 1<<20), types.ErrInvalidNetworkConfig},
		{"no subnet and no node state", env(nil), with(map[string]any{"subnet": nil}), types.ErrTryAgainLater},
		{"interface name taken in the pod", env(map[string]string{"CNI_NETNS": takenPod}), good, 100},
		{"bridge name taken by a non-bridge", env(nil), with(map[string]any{"bridge": notBridge}), 101},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := n.exec(c.env, c.stdin)
			if err == nil {
				t.Fatalf("exit 0; stdout %s", out)
			}
			var e types.Error
			if jerr := json.Unmarshal(out, &e); jerr != nil {
				t.Fatalf("stdout is not a CNI error object: %q", out)
			}
			if e.Code != c.code || e.Msg == "" {
				t.Fatalf("got code %d %q, want code %d", e.Code, e.Msg, c.code)
			}
			t.Logf("code %d: %s %s", e.Code, e.Msg, e.Details)
			assertNothingLeft(t, n)
		})
	}
	// Weft did not touch what was not its own.
	if err := inNS(takenPod, func() error { _, err := netlink.LinkByName("eth0"); return err }); err != nil {
		t.Errorf("the pod's own eth0 is gone: %v", err)
	}
	if l := n.links(notBridge); len(l) != 2 {
		t.Errorf("the veth holding the bridge name is gone: %v", l)
	}
}

func assertNothingLeft(t *testing.T, n *node) {
	t.Helper()
	for _, l := range n.veths() {
		if strings.HasPrefix(l.Attrs().Name, "weft") {
			t.Errorf("veth %s left behind", l.Attrs().Name)
		}
	}
	if l := n.leases(); len(l) != 0 {
		t.Errorf("leases left behind: %v", l)
	}
	// No address outside the good config's subnet on any interface (a
	// refused 0.0.0.0/0 once left a bridge holding 0.0.0.1/0).
	good := netip.MustParsePrefix("10.99.30.0/24")
	if err := n.do(func() error {
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP.To4())
			if !ip.IsLoopback() && !good.Contains(ip) {
				t.Errorf("address %s left in the node", a.IPNet)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// A full subnet is a clear error (102) and the failed ADD holds nothing.
func TestFullSubnet(t *testing.T) {
	n := newNode(t)
	conf := n.conf("1.1.0", "10.99.31.0/30", nil) // room for one pod
	n.mustAdd(conf, rt("first", newPod(t), "eth0"))
	_, err := n.add(conf, rt("second", newPod(t), "eth0"))
	if cniCode(err) != 102 {
		t.Fatalf("ADD into a full subnet: %v", err)
	}
	if l := n.leases(); len(l) != 1 {
		t.Errorf("leases: %v", l)
	}
	if v := n.veths(); len(v) != 1 {
		t.Errorf("veths: %v", v)
	}
}
