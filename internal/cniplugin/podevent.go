package cniplugin

import (
	"net/netip"
	"strings"
	"sync"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/weftnet/weft/internal/cnievents"
)

// given holds the address each successful ADD gave, keyed by its
// *skel.CmdArgs, from cmdAdd to reported (whose verb signature skel
// fixes): the agent's policy controller learns it from the event.
var given sync.Map

// noteAddress records the address the ADD for args gave.
func noteAddress(args *skel.CmdArgs, addr netip.Addr) { given.Store(args, addr) }

// Kubernetes bounds on the names passed in CNI_ARGS (a namespace is a
// DNS label, a pod name a DNS subdomain); longer values are not a pod's.
const (
	maxNamespace = 63
	maxPodName   = 253
	maxUID       = 64
)

// podOf is the pod an ADD or DEL was for, from CNI_ARGS
// ("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=name;..."), with the address an
// ADD gave; nil when the runtime named no pod. It takes addresses out of
// given for every verb, so that nothing stays there.
func podOf(verb string, args *skel.CmdArgs, ok bool) *cnievents.Pod {
	v, _ := given.LoadAndDelete(args)
	switch verb {
	case "ADD", "DEL":
	default:
		return nil
	}
	p := &cnievents.Pod{ContainerID: args.ContainerID}
	for _, kv := range strings.Split(args.Args, ";") {
		k, val, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			p.Namespace = val
		case "K8S_POD_NAME":
			p.Name = val
		case "K8S_POD_UID":
			p.UID = val
		}
	}
	if p.Namespace == "" || p.Name == "" || len(p.Namespace) > maxNamespace || len(p.Name) > maxPodName || len(p.UID) > maxUID {
		return nil
	}
	if a, isAddr := v.(netip.Addr); isAddr && ok && verb == "ADD" && a.Is4() {
		p.IP = a.String()
	}
	return p
}
