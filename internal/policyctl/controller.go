package policyctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/netpolnft"
)

var (
	gvrPolicies   = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
	gvrPods       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	gvrNamespaces = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// Config configures a node's policy controller.
type Config struct {
	Client    dynamic.Interface
	NodeName  string
	NodeCIDRs []netip.Prefix // the node's pod subnets
	// Resync is how often the table is read back and repaired without
	// any change in the cluster (default 30 s).
	Resync time.Duration
	Logger *slog.Logger
	// ProcSysNet is where the node's net sysctls are (default
	// /proc/sys/net; see agent.Config).
	ProcSysNet string
	// DropLog says how dropped packets are logged (Rate 0: not at all;
	// see DefaultDropLog).
	DropLog netpolnft.DropLog
	// Report, when set, is told what keeps enforcement from being whole
	// after every apply ("" once it is), so that it reaches the
	// operator, not only the log.
	Report func(problem string)
}

// Controller keeps the node's policy table equal to what the cluster's
// policies, pods and namespaces ask for.
type Controller struct {
	cfg     Config
	cl      *cluster
	kick    chan struct{}
	applier netpolnft.Applier
	compile netpol.Compiler // only Run's goroutine uses it
	metrics *collector

	mu      sync.Mutex
	last    *netpol.State
	lastErr error
	// bridgeErr is why same-node traffic is not policed, if it is not.
	bridgeErr error
}

// New checks cfg.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.NodeName == "" || len(cfg.NodeCIDRs) == 0 {
		return nil, errors.New("policy controller: needs a client, the node's name and its pod subnets")
	}
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Controller{cfg: cfg, cl: newCluster(), kick: make(chan struct{}, 1)}
	c.metrics = newCollector()
	return c, nil
}

// Run watches the cluster and applies until ctx ends. Nothing is applied
// before all three informers have listed: a partial view would drop
// traffic that is allowed (or allow what is not). The table stays when
// Run returns: enforcement does not stop while the agent restarts.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The table logs only what the agent can read: set before the first
	// apply.
	if r := c.openDropLog(); r != nil {
		c.applier.Log = c.cfg.DropLog
		go c.logDrops(ctx, r)
	}
	informers := []cache.SharedIndexInformer{
		c.informer(gvrNamespaces, c.cl.setNamespace, func(_, name string) { c.cl.deleteNamespace(name) }),
		c.informer(gvrPods, c.cl.setPod, c.cl.deletePod),
		c.informer(gvrPolicies, c.cl.setPolicy, c.cl.deletePolicy),
	}
	var synced []cache.InformerSynced
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range informers {
		wg.Add(1)
		go func() { defer wg.Done(); inf.RunWithContext(ctx) }()
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx ended first
	}
	if err := c.ensureBridgeNF(); err != nil {
		c.cfg.Logger.Error("policy: same-node traffic bypasses NetworkPolicy", "err", err)
		c.mu.Lock()
		c.bridgeErr = err
		c.mu.Unlock()
	}
	c.cfg.Logger.Info("policy: cluster listed; enforcing", "node", c.cfg.NodeName)
	resync := time.NewTicker(c.cfg.Resync)
	defer resync.Stop()
	for {
		c.apply()
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-resync.C:
			// Read the kernel back: a table someone edited or flushed is
			// put right.
			c.applier.Forget()
		}
	}
}

func (c *Controller) apply() {
	start := time.Now()
	st := c.compile.Compile(c.cl.input(c.cfg.NodeName, c.cfg.NodeCIDRs))
	res, err := c.applier.Apply(st)
	c.metrics.observe(time.Since(start), err)
	c.mu.Lock()
	c.lastErr = err
	if err == nil {
		c.last = st
	}
	problem := errors.Join(c.bridgeErr, err)
	c.mu.Unlock()
	if c.cfg.Report != nil {
		if problem != nil {
			c.cfg.Report(problem.Error())
		} else {
			c.cfg.Report("")
		}
	}
	if err != nil {
		c.cfg.Logger.Error("policy: apply failed; retrying on the next change or resync", "err", err)
		return
	}
	if res.Ops > 0 {
		c.cfg.Logger.Debug("policy applied", "ops", res.Ops, "rebuilt", res.Rebuilt,
			"rejudged", res.Bumped, "chains", len(st.Chains), "took", time.Since(start))
	}
}

// State is the last State applied (nil before the first), for doctor's
// Check and for status.
func (c *Controller) State() (*netpol.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.lastErr
}

// Bad lists the objects left out because they did not decode.
func (c *Controller) Bad() map[string]string { return c.cl.Bad() }

func (c *Controller) signal() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// informer lists and watches one resource in every namespace, handing
// each object's unstructured content to set and each deletion to del.
func (c *Controller) informer(gvr schema.GroupVersionResource, set func(map[string]any), del func(ns, name string)) cache.SharedIndexInformer {
	res := c.cfg.Client.Resource(gvr)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := res.List(ctx, o)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", gvr.Resource, err)
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	_ = inf.SetTransform(Slim)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				set(u.Object)
				c.signal()
			}
		},
		UpdateFunc: func(_, obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				set(u.Object)
				c.signal()
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				del(u.GetNamespace(), u.GetName())
				c.signal()
			}
		},
	})
	return inf
}

// Explain says which policies select the pod namespace/name and what they
// allow, from the controller's view of the cluster (`weft policy`).
func (c *Controller) Explain(namespace, name string) (netpol.Explanation, error) {
	return netpol.Explain(c.cl.input(c.cfg.NodeName, c.cfg.NodeCIDRs), namespace, name)
}
