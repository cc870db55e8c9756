// Package lab runs a whole Weft cluster on one Linux machine: an underlay
// namespace with the segments' bridges and the datastore, one namespace per
// node with a real `weft agent` in it, and pods made through the real
// weft-cni with libcni. It owns the lab's namespaces, processes and its
// directory under /run/weft-lab, and removes all of them; it never gives
// the host's own namespace an address or a route into the lab, and talks
// to what runs inside by entering namespaces.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/lab/process"
	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/store/etcdstore"
)

// Config is what `weft lab up` asks for.
type Config struct {
	Name        string
	Nodes       int
	PodsPerNode int
	Backend     cluster.Backend
	Segments    int
	ClusterCIDR netip.Prefix
	SubnetLen   int
	LeaseTTL    time.Duration
	Datastore   string
	// Kubelet runs a real containerd and kubelet on every node instead
	// of the lab's own agents and pods (the datastore is then Kubernetes).
	Kubelet bool
	// Install, with Kubelet, applies deploy/weft.yaml (as embedded in the
	// binary) and waits until every node is Ready.
	Install bool
	// WeftBin and CNIBin are the binaries the lab runs: `weft` for the
	// agents, weft-cni as the CNI plugin. LabBin is weft-lab, which runs
	// the lab's datastore; empty means weft-lab beside WeftBin.
	WeftBin, CNIBin, LabBin string
	// RefPluginDir holds the reference CNI plugins (portmap, ...) that
	// the conflist may chain; empty means /usr/lib/cni.
	RefPluginDir string
	// ReadyTimeout bounds the wait for agents and for the full matrix.
	ReadyTimeout time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// DefaultConfig is `weft lab run`'s lab.
func DefaultConfig() Config {
	return Config{
		Name: "weft", Nodes: 3, PodsPerNode: 2, Backend: cluster.BackendAuto, Segments: 1,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, LeaseTTL: etcdstore.DefaultTTL,
		Datastore: "etcd", ReadyTimeout: 60 * time.Second,
	}
}

func (c *Config) validate() error {
	if err := CheckName(c.Name); err != nil {
		return err
	}
	if c.Nodes < 1 || c.Nodes > 100 {
		return fmt.Errorf("--nodes %d: want 1 to 100", c.Nodes)
	}
	if c.PodsPerNode < 0 || c.PodsPerNode > 50 {
		return fmt.Errorf("--pods-per-node %d: want 0 to 50", c.PodsPerNode)
	}
	if !c.Backend.Valid() {
		return fmt.Errorf("--backend %q: want auto, host-gw or vxlan", c.Backend)
	}
	if c.Segments != 1 && c.Segments != 2 {
		return fmt.Errorf("--segments %d: want 1 or 2", c.Segments)
	}
	if !c.ClusterCIDR.IsValid() || !c.ClusterCIDR.Addr().Is4() {
		return fmt.Errorf("--cluster-cidr %s: want an IPv4 prefix", c.ClusterCIDR)
	}
	if c.LeaseTTL <= 0 {
		return fmt.Errorf("--lease-ttl %s: want a positive duration", c.LeaseTTL)
	}
	if c.Kubelet {
		c.Datastore = "kubernetes"
	}
	if c.LabBin == "" {
		c.LabBin = filepath.Join(filepath.Dir(c.WeftBin), "weft-lab")
	}
	for _, b := range []string{c.WeftBin, c.CNIBin, c.LabBin} {
		if st, err := os.Stat(b); err != nil || st.IsDir() {
			return fmt.Errorf("binary %q not found: build it with `make build`", b)
		}
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.RefPluginDir == "" {
		c.RefPluginDir = "/usr/lib/cni"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

// Lab is a running lab, made by Up or found by Open.
type Lab struct {
	*State
	ds  Datastore
	log io.Writer

	mu    sync.Mutex
	procs []*process.Proc
}

func (l *Lab) track(p *process.Proc) {
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
}

func (l *Lab) logf(format string, args ...any) { fmt.Fprintf(l.log, format+"\n", args...) }

// EtcdClient returns a client of the lab's etcd that connects from inside
// the underlay namespace; the caller closes it.
func (l *Lab) EtcdClient() (*clientv3.Client, error) {
	e, ok := l.ds.(*etcdDatastore)
	if !ok {
		return nil, fmt.Errorf("lab %s's datastore is not etcd", l.Name)
	}
	return e.Client()
}

// EtcdClientAs returns a client of the lab's etcd that acts with node's
// own certificate, from inside node's namespace, as its agent does: what
// someone who stole the node's credentials could do. The caller closes it.
func (l *Lab) EtcdClientAs(node string) (*clientv3.Client, error) {
	e, ok := l.ds.(*etcdDatastore)
	if !ok {
		return nil, fmt.Errorf("lab %s's datastore is not etcd", l.Name)
	}
	n, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	return e.clientIn(n.Netns, node)
}

// StopDatastore stops the datastore, keeping its data.
func (l *Lab) StopDatastore() error { return l.ds.Stop() }

// StartDatastore starts the datastore again.
func (l *Lab) StartDatastore(ctx context.Context) error { return l.ds.Start(ctx) }

// Open finds a lab that Up made, possibly in another process.
func Open(name string, log io.Writer) (*Lab, error) {
	s, err := loadState(name)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	l := &Lab{State: s, log: log}
	if l.ds, err = l.newDatastore(s.Datastore.Kind); err != nil {
		return nil, err
	}
	return l, nil
}

// Exists reports whether anything of a lab named name is on the machine.
func Exists(name string) bool {
	if _, err := os.Stat(Dir(name)); err == nil {
		return true
	}
	left, _ := netns.List(name + "-")
	return len(left) > 0
}

// Up builds a lab and returns once every pod reaches every other. On
// failure it removes whatever it made.
func Up(ctx context.Context, cfg Config) (l *Lab, err error) {
	l, err = create(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if derr := l.Down(); derr != nil {
				err = fmt.Errorf("%w (and removing the lab: %v)", err, derr)
			}
			l = nil
		}
	}()
	if cfg.Kubelet {
		if err := os.WriteFile(filepath.Join(l.Dir, kubeletMarker), nil, 0o644); err != nil {
			return l, err
		}
	}
	if err := l.buildBase(ctx); err != nil {
		return l, err
	}
	if cfg.Kubelet {
		return l, l.upKubelet(ctx, cfg)
	}
	s := l.State
	var nodes []string
	for i := 0; i < cfg.Nodes; i++ {
		n, err := l.NewNode(0)
		if err != nil {
			return l, err
		}
		if err := l.StartAgent(n.Name); err != nil {
			return l, err
		}
		nodes = append(nodes, n.Name)
	}
	for _, n := range nodes {
		if err := l.WaitAgentReady(ctx, n, cfg.ReadyTimeout); err != nil {
			return l, err
		}
		nd, _ := l.Node(n)
		l.logf("lab %s: node %s (underlay %s) ready, subnet %s", s.Name, n, nd.UnderlayIP, nd.Subnet)
	}
	if err := l.startPodSync(); err != nil {
		return l, err
	}
	for _, n := range nodes {
		for k := 0; k < cfg.PodsPerNode; k++ {
			p, err := l.AddPod(ctx, n)
			if err != nil {
				return l, err
			}
			l.logf("lab %s: pod %s %s", s.Name, p.Name, p.IP)
		}
	}
	start := time.Now()
	if _, err := l.WaitMatrix(ctx, cfg.ReadyTimeout); err != nil {
		return l, err
	}
	l.logf("lab %s: every pod reaches every other (%d pods, converged in %s)", s.Name, len(l.Pods()), time.Since(start).Round(time.Millisecond))
	return l, nil
}

// create validates cfg and makes the lab's directory and state; the caller
// removes the lab if anything after this fails.
func create(cfg Config) (*Lab, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if Exists(cfg.Name) {
		return nil, fmt.Errorf("lab %q exists already (namespaces %s-*, directory %s): remove it with `weft lab down --name %s`", cfg.Name, cfg.Name, Dir(cfg.Name), cfg.Name)
	}
	s := &State{
		Name: cfg.Name, Dir: Dir(cfg.Name), Backend: cfg.Backend, Segments: cfg.Segments,
		PodsPerNode: cfg.PodsPerNode, ClusterCIDR: cfg.ClusterCIDR.Masked(), SubnetLen: cfg.SubnetLen,
		LeaseTTL: cfg.LeaseTTL.String(), Underlay: cfg.Name + "-ul",
	}
	s.BinDir = filepath.Join(s.Dir, "bin")
	if s.Segments == 2 {
		s.Router = cfg.Name + "-rt"
	}
	l := &Lab{State: s, log: cfg.Log}
	var err error
	if l.ds, err = l.newDatastore(cfg.Datastore); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.BinDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab directory: %w", err)
	}
	if s.LabBin, err = filepath.Abs(cfg.LabBin); err == nil {
		s.WeftBin, err = installBins(s.BinDir, cfg)
	}
	if err == nil {
		err = s.save()
	}
	if err != nil {
		os.RemoveAll(s.Dir)
		return nil, err
	}
	return l, nil
}

// buildBase makes the underlay (and router) and starts the datastore.
func (l *Lab) buildBase(ctx context.Context) error {
	s := l.State
	l.logf("lab %s: underlay %s, %d segment(s)", s.Name, s.Underlay, s.Segments)
	if err := s.buildUnderlay(); err != nil {
		return err
	}
	if err := l.ds.Start(ctx); err != nil {
		return err
	}
	l.logf("lab %s: datastore %s at %s", s.Name, s.Datastore.Kind, s.Datastore.Endpoint)
	return nil
}

// installBins fills the lab's CNI bin directory: weft-cni, the
// weft-portmap built beside it (as install-cni installs both on a node),
// and the reference plugins a conflist may chain, as symlinks.
func installBins(binDir string, cfg Config) (string, error) {
	weft, err := filepath.Abs(cfg.WeftBin)
	if err != nil {
		return "", err
	}
	cni, err := filepath.Abs(cfg.CNIBin)
	if err != nil {
		return "", err
	}
	if err := os.Symlink(cni, filepath.Join(binDir, "weft-cni")); err != nil {
		return "", fmt.Errorf("install weft-cni: %w", err)
	}
	if pm := filepath.Join(filepath.Dir(cni), "weft-portmap"); isFile(pm) {
		if err := os.Symlink(pm, filepath.Join(binDir, "weft-portmap")); err != nil {
			return "", fmt.Errorf("install weft-portmap: %w", err)
		}
	}
	refs, err := os.ReadDir(cfg.RefPluginDir)
	if err != nil {
		return "", fmt.Errorf("reference CNI plugins in %s: %w (install Debian's containernetworking-plugins)", cfg.RefPluginDir, err)
	}
	for _, r := range refs {
		if err := os.Symlink(filepath.Join(cfg.RefPluginDir, r.Name()), filepath.Join(binDir, r.Name())); err != nil {
			return "", fmt.Errorf("install %s: %w", r.Name(), err)
		}
	}
	return weft, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// NewNode adds a node namespace wired to segment seg (0: alternate
// between segments), without an agent yet.
func (l *Lab) NewNode(seg int) (*NodeState, error) {
	s := l.State
	s.NextNode++
	i := s.NextNode
	if i > 250 {
		return nil, fmt.Errorf("lab %s: no underlay address left for another node", s.Name)
	}
	if seg == 0 {
		seg = 1 + (i-1)%s.Segments
	}
	if seg < 1 || seg > s.Segments {
		return nil, fmt.Errorf("lab %s has no segment %d", s.Name, seg)
	}
	name := fmt.Sprintf("n%d", i)
	n := &NodeState{
		Name: name, Netns: s.Name + "-" + name, Segment: seg,
		UnderlayIP: hostAddr(s.segmentPrefix(seg), i),
		Dir:        filepath.Join(s.Dir, name),
	}
	n.AgentLog = filepath.Join(n.Dir, "agent.log")
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return nil, err
	}
	s.Nodes = append(s.Nodes, n)
	if err := s.save(); err != nil {
		return nil, err
	}
	if err := s.buildNode(n); err != nil {
		return nil, err
	}
	if p, ok := l.ds.(nodeProvisioner); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.ProvisionNode(ctx, n); err != nil {
			return nil, fmt.Errorf("provision node %s: %w", n.Name, err)
		}
	}
	return n, nil
}

// JoinNode adds a node with a running, ready agent and pods pods on it.
func (l *Lab) JoinNode(ctx context.Context, seg, pods int) (*NodeState, error) {
	n, err := l.NewNode(seg)
	if err != nil {
		return nil, err
	}
	if err := l.StartAgent(n.Name); err != nil {
		return n, err
	}
	if err := l.WaitAgentReady(ctx, n.Name, 60*time.Second); err != nil {
		return n, err
	}
	for k := 0; k < pods; k++ {
		if _, err := l.AddPod(ctx, n.Name); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CleanupNode stops node's agent and runs `weft agent --cleanup` with the
// same flags in the node's namespace: Weft's own way to take a node out,
// which removes what Weft made on the node and the node's record and lease
// from the datastore (so that its peers remove what they programmed for
// it). The node's pods are deleted through CNI first.
func (l *Lab) CleanupNode(ctx context.Context, name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	var errs []error
	// DelPod drops a pod from n.Pods when it succeeds; one it fails on is
	// dropped here, its namespace removed without CNI.
	for _, p := range slices.Clone(n.Pods) {
		if err := l.DelPod(ctx, p.Name); err != nil {
			errs = append(errs, err, netns.Delete(p.Netns))
			n.Pods = slices.DeleteFunc(n.Pods, func(x *PodState) bool { return x == p })
		}
	}
	if err := l.StopAgent(name, syscall.SIGTERM); err != nil {
		errs = append(errs, err)
	}
	p, err := process.StartIn(n.Netns, n.AgentLog, append(l.agentArgs(n), "--cleanup"))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	select {
	case <-p.Done:
		if !p.Cmd.ProcessState.Success() {
			errs = append(errs, fmt.Errorf("weft agent --cleanup on %s: %s; %s", name, p.Cmd.ProcessState, process.LogTail(n.AgentLog)))
		}
	case <-time.After(30 * time.Second):
		p.Cmd.Process.Kill()
		<-p.Done
		errs = append(errs, fmt.Errorf("weft agent --cleanup on %s: still running after 30s", name))
	case <-ctx.Done():
		p.Cmd.Process.Kill()
		<-p.Done
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// RemoveNode takes a node out for good (CleanupNode, and deleting it from
// a datastore that needs that), then removes its namespace, its underlay
// link and its directory.
func (l *Lab) RemoveNode(ctx context.Context, name string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	errs := []error{l.CleanupNode(ctx, name)}
	if f, ok := l.ds.(nodeForgetter); ok {
		errs = append(errs, f.Forget(ctx, name))
	}
	errs = append(errs, l.unwire(name), netns.Delete(n.Netns), os.RemoveAll(n.Dir))
	l.Nodes = slices.DeleteFunc(l.Nodes, func(x *NodeState) bool { return x == n })
	errs = append(errs, l.save())
	return errors.Join(errs...)
}

// Down removes the lab: every process in its namespaces or working in its
// directory, every namespace whose name starts with "<name>-", and the
// directory. It needs no state file, so it also cleans up after an up
// that crashed.
func (l *Lab) Down() error { return Down(l.Name) }

// Down removes the lab named name; see (*Lab).Down.
func Down(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	// Kubelet nodes first: each takes its containers down with it.
	errs := []error{stopKubeletNodes(name), stopPodSync(name)}
	// Pods first, through CNI, so that the plugin releases their
	// addresses as a runtime would; the namespaces go anyway below.
	if l, err := Open(name, nil); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, p := range l.Pods() {
			l.DelPod(ctx, p.Name)
		}
		cancel()
	}
	pids, err := labProcesses(name)
	if err != nil {
		errs = append(errs, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, pid := range pids {
		wg.Go(func() {
			if err := process.SignalWait(pid, syscall.SIGTERM, 5*time.Second); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	left, err := netns.List(name + "-")
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range left {
		if err := netns.Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, cleanupKubeletNodes(name))
	if err := os.RemoveAll(Dir(name)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
