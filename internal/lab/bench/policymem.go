package bench

import (
	"encoding/json"

	"io"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"os"
	"runtime"
	"time"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpol/netpoltest"
	"github.com/weftnet/weft/internal/netpolnft"
	"github.com/weftnet/weft/internal/policyctl"
)

// RunMemory holds what the agent's policy controller holds for
// PolicyScale (on 110 local pods), in the calling process's network
// namespace, and writes a Memory report to w: the objects as the
// informers keep them, their decoded form keyed as the controller keys
// it, the compiler's memory and the applier's state of the applied
// table (removed again before it returns).
func RunMemory(w io.Writer) error {
	runtime.GC()
	base, err := rssKB(os.Getpid())
	if err != nil {
		return err
	}
	// The objects as the informers keep them: each made whole, as a
	// list page brings it, then slimmed by the controller's transform.
	cl := PolicyScale.Cluster()
	var kept []*unstructured.Unstructured
	keep := func(o map[string]any) (map[string]any, error) {
		u := &unstructured.Unstructured{Object: o}
		if _, err := policyctl.Slim(u); err != nil {
			return nil, err
		}
		kept = append(kept, u)
		return u.Object, nil
	}
	in := netpol.Input{Node: cl.Node, NodeCIDRs: cl.NodeCIDRs}
	decoded := map[string]any{}
	for _, n := range cl.Namespaces {
		o, err := keep(netpoltest.NamespaceObject(n))
		if err != nil {
			return err
		}
		d := netpol.DecodeNamespace(o)
		decoded["ns "+d.Name] = d
		in.Namespaces = append(in.Namespaces, d)
	}
	for i, p := range cl.Pods {
		o, err := keep(netpoltest.PodObject(p, i))
		if err != nil {
			return err
		}
		d, _, err := netpol.DecodePod(o)
		if err != nil {
			return err
		}
		decoded["pod "+d.Namespace+"/"+d.Name] = d
		in.Pods = append(in.Pods, d)
	}
	for _, p := range cl.Policies {
		o, err := keep(netpoltest.PolicyObject(p))
		if err != nil {
			return err
		}
		d, err := netpol.DecodePolicy(o)
		if err != nil {
			return err
		}
		decoded["np "+d.ID()] = d
		in.Policies = append(in.Policies, d)
	}
	cl = netpol.Input{}
	if _, err := netpolnft.Remove(); err != nil {
		return err
	}
	defer netpolnft.Remove()
	var k netpol.Compiler
	a := &netpolnft.Applier{}
	start := time.Now()
	if _, err := a.Apply(k.Compile(in)); err != nil {
		return err
	}
	took := time.Since(start)
	runtime.GC()
	rss, err := rssKB(os.Getpid())
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// Everything above stays reachable until the figures are taken.
	runtime.KeepAlive(kept)
	runtime.KeepAlive(decoded)
	runtime.KeepAlive(a)
	runtime.KeepAlive(&k)
	return json.NewEncoder(w).Encode(Memory{BaseRSSKiB: base, RSSKiB: rss, HeapKiB: int(ms.HeapAlloc / 1024), ApplyNanos: took.Nanoseconds()})
}
