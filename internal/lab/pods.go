package lab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

// cni runs the node's conflist the way a container runtime does: libcni
// executes the plugins found in the lab's bin directory, and it does so
// from inside the node's namespace, because a plugin process inherits the
// namespace of the thread that forks it and a runtime runs in its node's.
func (l *Lab) cni(n *NodeState, fn func(*libcni.CNIConfig, *libcni.NetworkConfigList) error) error {
	path := filepath.Join(n.CNIConfDir(), names.ConfListName)
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		return fmt.Errorf("node %s: load %s: %w", n.Name, path, err)
	}
	c := libcni.NewCNIConfigWithCacheDir([]string{l.BinDir}, n.cacheDir(), nil)
	return ns.WithNetNSPath(netns.Path(n.Netns), func(ns.NetNS) error { return fn(c, list) })
}

func runtimeConf(p *PodState) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       netns.Path(p.Netns),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", "default"},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
		},
	}
}

// AddPod makes a pod on node: a namespace of its own attached through the
// node's CNI configuration. On failure nothing of the pod is left.
func (l *Lab) AddPod(ctx context.Context, node string) (*PodState, error) {
	n, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	n.NextPod++
	name := fmt.Sprintf("%s-p%d", n.Name, n.NextPod)
	p := &PodState{Name: name, Netns: l.Name + "-" + name, ContainerID: l.Name + "-" + name}
	pn, err := netns.Create(p.Netns)
	if err != nil {
		return nil, err
	}
	pn.Close()
	p.IP, err = l.Attach(ctx, n, runtimeConf(p))
	if err != nil {
		l.Detach(ctx, n, runtimeConf(p))
		netns.Delete(p.Netns)
		return nil, fmt.Errorf("pod %s: CNI ADD: %w", name, err)
	}
	n.Pods = append(n.Pods, p)
	return p, l.save()
}

// Attach runs CNI ADD on node n for rc, as n's container runtime would,
// and returns the pod's address.
func (l *Lab) Attach(ctx context.Context, n *NodeState, rc *libcni.RuntimeConf) (netip.Addr, error) {
	var res *types100.Result
	err := l.cni(n, func(c *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
		out, err := c.AddNetworkList(ctx, list, rc)
		if err != nil {
			return err
		}
		res, err = types100.NewResultFromResult(out)
		return err
	})
	if err != nil {
		return netip.Addr{}, err
	}
	return podIP(res)
}

// Detach runs CNI DEL on node n for rc, as n's container runtime would.
func (l *Lab) Detach(ctx context.Context, n *NodeState, rc *libcni.RuntimeConf) error {
	return l.cni(n, func(c *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
		return c.DelNetworkList(ctx, list, rc)
	})
}

func podIP(r *types100.Result) (netip.Addr, error) {
	for _, ip := range r.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP.To4()); ok {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("CNI result has no IPv4 address: %v", r)
}

// DelPod removes a pod: CNI DEL on its node, then its namespace.
func (l *Lab) DelPod(ctx context.Context, pod string) error {
	for _, n := range l.Nodes {
		for i, p := range n.Pods {
			if p.Name != pod {
				continue
			}
			if err := l.Detach(ctx, n, runtimeConf(p)); err != nil {
				return fmt.Errorf("pod %s: CNI DEL: %w", pod, err)
			}
			if err := netns.Delete(p.Netns); err != nil {
				return err
			}
			n.Pods = append(n.Pods[:i], n.Pods[i+1:]...)
			return l.save()
		}
	}
	return fmt.Errorf("lab %s has no pod %q", l.Name, pod)
}

// Pod returns the named pod.
func (s *State) Pod(name string) (*PodState, error) {
	for _, p := range s.Pods() {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("lab %s has no pod %q", s.Name, name)
}
