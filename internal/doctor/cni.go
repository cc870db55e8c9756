package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// statusVersion is the first CNI spec with STATUS. Weft's conflist says
// an older version for the runtimes of today, and libcni skips STATUS for
// those, so doctor asks the plugin in this version directly.
const statusVersion = "1.1.0"

// checkCNI runs weft-cni's STATUS through libcni, with the network config
// the agent wrote, the way a CNI 1.1 runtime asks whether pods can start.
func checkCNI(ctx context.Context, o Options) Finding {
	f := Finding{Check: "CNI STATUS", Result: Fail}
	path := filepath.Join(o.ConfDir, names.ConfListName)
	list, err := weftOnly(path)
	if err != nil {
		f.Detail = err.Error()
		f.Fix = "the agent writes the CNI config once it holds a subnet: see `weft status` (and --cni-conf-dir if the runtime reads another directory)"
		return f
	}
	c := libcni.NewCNIConfig([]string{o.BinDir}, nil)
	if err := c.GetStatusNetworkList(ctx, list); err != nil {
		f.Detail = fmt.Sprintf("%s in %s answers STATUS: %s", names.PluginType, o.BinDir, cniError(err))
		f.Fix = fmt.Sprintf("the runtime will not start pods with this network: if the plugin is missing, the agent installs it into %s; if it cannot allocate, see the IPAM findings and `weft status`", o.BinDir)
		return f
	}
	f.Result = OK
	f.Detail = fmt.Sprintf("%s (%s in %s) reports ready: an ADD could allocate now", names.PluginType, names.ConfListName, o.ConfDir)
	return f
}

// weftOnly loads the conflist and keeps Weft's own plugin, in the STATUS
// version: chained plugins (portmap) answer for themselves in their own
// versions.
func weftOnly(path string) (*libcni.NetworkConfigList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CNI config: %w", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("CNI config %s: %w", path, err)
	}
	plugins, _ := raw["plugins"].([]any)
	var keep []any
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == names.PluginType {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("CNI config %s has no %s plugin", path, names.PluginType)
	}
	raw["plugins"], raw["cniVersion"] = keep, statusVersion
	b, err = json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("CNI config %s: %w", path, err)
	}
	return list, nil
}

func cniError(err error) string {
	var e *types.Error
	if errors.As(err, &e) {
		s := fmt.Sprintf("error %d: %s", e.Code, e.Msg)
		if e.Details != "" {
			s += " (" + e.Details + ")"
		}
		return s
	}
	return err.Error()
}

// Released is an address ReleaseLeaks gave back.
type Released struct {
	Addr        netip.Addr `json:"ip"`
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifName"`
}

// ReleaseLeaks runs CNI DEL, through libcni and the node's conflist, for
// every attachment whose address doctor reports as leaked, as the runtime
// would have when the container went. DEL removes nothing that a live pod
// uses: the attachment's veth is already gone.
func ReleaseLeaks(ctx context.Context, o Options) ([]Released, error) {
	o.RunDir = names.Dirs{Run: o.RunDir}.WithDefaults().Run
	// The same directories, subnet and reading that Run reports from, so
	// that exactly what it called a leak is released.
	var dirs names.Dirs
	var subnet netip.Prefix
	if st, err := agentapi.NewClient(o.RunDir).Status(ctx); err == nil {
		dirs, subnet = st.Dirs, st.Subnet
	}
	o.defaults(dirs)
	if !subnet.IsValid() {
		if ns, err := nodestate.Read(o.DataDir); err == nil {
			subnet = ns.Subnet
		}
	}
	st, err := readIPAM(o, subnet)
	if err != nil {
		return nil, err
	}
	if len(st.leaks) == 0 {
		return nil, nil
	}
	path := filepath.Join(o.ConfDir, names.ConfListName)
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("CNI config: %w", err)
	}
	c := libcni.NewCNIConfig([]string{o.BinDir}, nil)
	var out []Released
	var errs []error
	for _, l := range st.leaks {
		rt := &libcni.RuntimeConf{ContainerID: l.ContainerID, IfName: l.IfName}
		if err := c.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL of %s (%s, %s): %s", l.Addr, l.ContainerID, l.IfName, cniError(err)))
			continue
		}
		out = append(out, Released{Addr: l.Addr, ContainerID: l.ContainerID, IfName: l.IfName})
	}
	return out, errors.Join(errs...)
}
