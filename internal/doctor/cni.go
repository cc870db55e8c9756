package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

// statusVersion is the first CNI spec with GC and STATUS.
const statusVersion = "1.1.0"

// checkCNI asks the CNI chain whether pods can start, the way a CNI 1.1
// runtime does: STATUS through libcni, with the network config the agent
// wrote. When the conflist offers 1.1.0 the runtime sends STATUS through
// every plugin in it, and so does doctor, which then also finds a chained
// plugin missing from the bin dir. When a chained plugin held the
// conflist below 1.1.0 the runtime sends neither GC nor STATUS: doctor
// asks weft-cni alone and warns.
func checkCNI(ctx context.Context, o Options) Finding {
	f := Finding{Check: "CNI STATUS", Result: Fail}
	path := filepath.Join(o.ConfDir, names.ConfListName)
	full, err := libcni.ConfListFromFile(path)
	if err != nil {
		f.Detail = fmt.Sprintf("CNI config: %v", err)
		f.Fix = "the agent writes the CNI config once it holds a subnet: see `weft status` (and --cni-conf-dir if the runtime reads another directory)"
		return f
	}
	list, chain := full, chainOf(full)
	offersStatus, _ := version.GreaterThanOrEqualTo(full.CNIVersion, statusVersion)
	if !offersStatus {
		if list, err = weftOnly(path); err != nil {
			f.Detail = err.Error()
			return f
		}
	}
	c := libcni.NewCNIConfig([]string{o.BinDir}, nil)
	if err := c.GetStatusNetworkList(ctx, list); err != nil {
		f.Detail = fmt.Sprintf("STATUS through %s in %s: %s", chainOf(list), o.BinDir, cniError(err))
		f.Fix = fmt.Sprintf("the runtime will not start pods with this network: a missing plugin is installed into %s by `weft install-cni` (the DaemonSet's init container: restart the node's weft pod); if %s cannot allocate, see the IPAM findings and `weft status`", o.BinDir, names.PluginType)
		return f
	}
	if !offersStatus {
		f.Result = Warn
		f.Detail = fmt.Sprintf("%s reports ready, but %s (%s) offers CNI up to %s only: the runtime sends no GC (it never releases leaked addresses itself) and no STATUS",
			names.PluginType, names.ConfListName, chain, full.CNIVersion)
		f.Fix = fmt.Sprintf("a chained plugin that speaks no newer CNI holds it there: install %s beside %s in %s (`weft install-cni` from Weft's image does; the agent then chains it and offers %s)", names.PortmapType, names.PluginType, o.BinDir, statusVersion)
		return f
	}
	f.Result = OK
	f.Detail = fmt.Sprintf("%s (%s in %s, CNI %s) reports ready: an ADD could allocate now", chain, names.ConfListName, o.ConfDir, full.CNIVersion)
	return f
}

// chainOf names the plugins of l, in order.
func chainOf(l *libcni.NetworkConfigList) string {
	var ts []string
	for _, p := range l.Plugins {
		ts = append(ts, p.Network.Type)
	}
	return strings.Join(ts, " → ")
}

// weftOnly loads the conflist and keeps Weft's own plugin, in the STATUS
// version, which weft-cni speaks whatever a chained plugin held the
// conflist to.
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
