package cniplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// NetConf is the network configuration weft-cni reads on stdin. Every key
// is documented in the README's "CNI plugin" section.
type NetConf struct {
	types.NetConf
	Bridge       string `json:"bridge,omitempty"`
	Subnet       string `json:"subnet,omitempty"`
	MTU          int    `json:"mtu,omitempty"`
	DataDir      string `json:"dataDir,omitempty"`
	EventsSocket string `json:"eventsSocket,omitempty"`
}

// Config is a NetConf with its defaults filled in and checked: the CNI
// keys as decoded, weft's own keys parsed (not beside their raw copies,
// which would leave two Bridge and two Subnet fields to confuse).
type Config struct {
	types.NetConf
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr
	MTU     int
	DataDir string
	IPAMDir string
}

const (
	defaultMTU = 1500
	minMTU     = 68
	maxMTU     = 65535
)

// decode parses and checks the configuration without touching the node.
// Its errors are CNI errors: 6 when the JSON does not decode, 7 when a
// value is wrong.
func decode(stdin []byte) (*NetConf, error) {
	var nc NetConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network config: %v", err), "")
	}
	if nc.Name == "" {
		return nil, invalidConfig("missing network name")
	}
	if _, _, _, err := version.ParseVersion(nc.CNIVersion); err != nil {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("cniVersion %q: %v", nc.CNIVersion, err), "")
	}
	if nc.Bridge != "" {
		if err := checkIfName(nc.Bridge); err != nil {
			return nil, invalidConfig(fmt.Sprintf("bridge: %v", err))
		}
	}
	if nc.Subnet != "" {
		p, err := netip.ParsePrefix(nc.Subnet)
		if err != nil {
			return nil, invalidConfig(fmt.Sprintf("subnet: %v", err))
		}
		if err := ipam.CheckSubnet(p); err != nil {
			return nil, invalidConfig(err.Error())
		}
	}
	if nc.MTU != 0 && (nc.MTU < minMTU || nc.MTU > maxMTU) {
		return nil, invalidConfig(fmt.Sprintf("mtu %d is outside %d..%d", nc.MTU, minMTU, maxMTU))
	}
	if nc.DataDir != "" {
		if err := checkPath(nc.DataDir); err != nil {
			return nil, invalidConfig(fmt.Sprintf("dataDir: %v", err))
		}
	}
	if nc.EventsSocket != "" {
		if err := checkPath(nc.EventsSocket); err != nil || len(nc.EventsSocket) > 107 {
			return nil, invalidConfig(fmt.Sprintf("eventsSocket %q is not a clean absolute socket path of at most 107 bytes", nc.EventsSocket))
		}
	}
	return &nc, nil
}

// load decodes the configuration and fills in what it leaves out from the
// node state the agent wrote. needSubnet is false for verbs that work
// without knowing the subnet (DEL, GC): they must succeed even before the
// agent ran or after it was removed.
func load(stdin []byte, needSubnet bool) (*Config, error) {
	nc, err := decode(stdin)
	if err != nil {
		return nil, err
	}
	c := &Config{NetConf: nc.NetConf, Bridge: nc.Bridge, DataDir: nc.DataDir, MTU: nc.MTU}
	if c.DataDir == "" {
		c.DataDir = names.DataDir
	}
	c.IPAMDir = ipam.Dir(c.DataDir, nc.Name)
	if nc.Subnet != "" {
		c.Subnet = netip.MustParsePrefix(nc.Subnet)
	}
	if c.Subnet.IsValid() && c.Bridge != "" && c.MTU != 0 {
		c.Gateway = ipam.Gateway(c.Subnet)
		return c, nil
	}
	st, err := nodestate.Read(c.DataDir)
	switch {
	case err == nil:
		if err := fillFromNodeState(c, st); err != nil && needSubnet {
			return nil, err
		}
		if needSubnet && nc.Subnet == "" && st.Lapsed(time.Now()) {
			// The agent has been down longer than its lease: another
			// node may hold this subnet by now. No pod gets an address
			// of it until the agent renews the lease (or takes another).
			return nil, types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("this node's lease on %s lapsed at %s and the weft agent has not renewed it", st.Subnet, st.LeaseExpires.Format(time.RFC3339)), "")
		}
	case !needSubnet:
		// DEL and GC go on with the defaults: they must work when the
		// node state is missing or broken.
	case errors.Is(err, os.ErrNotExist) && c.Subnet.IsValid():
		// A config with a subnet needs no node state.
	case errors.Is(err, os.ErrNotExist):
		return nil, types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("the weft agent has not set up this node yet (no %s) and the config has no subnet", nodestate.Path(c.DataDir)), "")
	default:
		return nil, types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	if c.Bridge == "" {
		c.Bridge = names.Bridge
	}
	if c.MTU == 0 {
		c.MTU = defaultMTU
	}
	if c.Subnet.IsValid() {
		c.Gateway = ipam.Gateway(c.Subnet)
	}
	return c, nil
}

// fillFromNodeState takes what the config leaves out from the agent's
// node state. A value the agent wrote wrong is an error rather than a
// silent default: pods with the wrong MTU or bridge are worse than none.
func fillFromNodeState(c *Config, st nodestate.State) error {
	where := nodestate.Path(c.DataDir)
	if !c.Subnet.IsValid() {
		if err := ipam.CheckSubnet(st.Subnet); err != nil {
			return invalidConfig(fmt.Sprintf("node state %s: %v", where, err))
		}
		c.Subnet = st.Subnet
	}
	if c.MTU == 0 && st.MTU != 0 {
		if st.MTU < minMTU || st.MTU > maxMTU {
			return invalidConfig(fmt.Sprintf("node state %s: mtu %d is outside %d..%d", where, st.MTU, minMTU, maxMTU))
		}
		c.MTU = st.MTU
	}
	if c.Bridge == "" && st.Bridge != "" {
		if err := checkIfName(st.Bridge); err != nil {
			return invalidConfig(fmt.Sprintf("node state %s: bridge: %v", where, err))
		}
		c.Bridge = st.Bridge
	}
	return nil
}

// checkPath accepts an absolute path written plainly: no "..", "." or
// repeated "/", which would let a config that looks like it names a dir
// under /var/lib/weft write elsewhere.
func checkPath(p string) error {
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) || len(p) > maxPath {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("%q is not a clean path (it has '.', '..', repeated or trailing '/')", p)
	}
	return nil
}

// checkIfName applies the kernel's rules for an interface name.
func checkIfName(name string) error {
	if len(name) == 0 || len(name) > 15 {
		return fmt.Errorf("interface name %q must be 1 to 15 bytes", name)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return fmt.Errorf("interface name %q has a character not allowed in interface names", name)
		}
	}
	return nil
}
