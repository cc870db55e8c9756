package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/deploy"
	"github.com/weftnet/weft/internal/lab/controlplane"
	"github.com/weftnet/weft/internal/lab/images"
	"github.com/weftnet/weft/internal/lab/kubelet"
	"github.com/weftnet/weft/internal/lab/process"
)

// kubeletMarker, in a lab's directory, says that its nodes run kubelet.
const kubeletMarker = "kubelet"

// hostDirsRecord lists the host directories kubelet labs created as mount
// points (see kubelet.HostPaths), so that the last kubelet lab to go removes them.
var hostDirsRecord = filepath.Join(RootDir, ".kubelet-host-dirs")

// hostDirsMu serialises kubelet labs' changes to the host directories
// within one process; labs in other processes go through hostDirsLock.
var hostDirsMu sync.Mutex

// upKubelet brings up a lab whose nodes run a real containerd and kubelet
// (after buildBase started the control plane): kube-scheduler and the
// workload controllers join the control plane, the images are written,
// every node starts, and it returns once every node has registered. It
// does not install Weft: nodes stay NotReady until someone applies
// deploy/weft.yaml.
func (l *Lab) upKubelet(ctx context.Context, cfg Config) error {
	s := l.State
	start := time.Now()
	bins, err := kubelet.FindBinaries(l.logf)
	if err != nil {
		return err
	}
	paths, err := WriteImages(filepath.Dir(cfg.WeftBin), filepath.Join(s.Dir, "images"))
	if err != nil {
		return err
	}
	var archives []string
	for _, p := range paths {
		archives = append(archives, p)
	}
	slices.Sort(archives)
	if err := l.startWorkloadControllers(bins); err != nil {
		return err
	}
	if err := ensureHostDirs(); err != nil {
		return err
	}
	kc, err := l.Kubeconfig()
	if err != nil {
		return err
	}
	hostMNT, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	var names []string
	for i := 0; i < cfg.Nodes; i++ {
		n, err := l.NewNode(0)
		if err != nil {
			return err
		}
		if err := forwardAPIService(n.Netns, s.Datastore.Endpoint); err != nil {
			return err
		}
		rt := kubelet.Node{
			Node: n.Name, Dir: n.Dir, NodeIP: n.UnderlayIP.String(), Cgroup: n.Netns,
			Kubeconfig: kc, Images: archives, PauseImage: images.PauseImage, Bins: *bins, HostMountNS: hostMNT,
		}
		if err := l.startNodeRuntime(n, rt); err != nil {
			return err
		}
		names = append(names, n.Name)
	}
	if err := l.waitNodesRegistered(ctx, names, cfg.ReadyTimeout); err != nil {
		return err
	}
	l.logf("lab %s: %d kubelet nodes registered in %s (NotReady until a network is installed: weft lab kubectl --name %s apply -f deploy/weft.yaml)",
		s.Name, len(names), time.Since(start).Round(time.Millisecond), s.Name)
	if cfg.Install {
		return l.install(ctx, cfg.ReadyTimeout)
	}
	return nil
}

// install applies Weft's manifest as an operator would and waits until
// every node is Ready.
func (l *Lab) install(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	cmd, err := l.Kubectl("apply", "-f", "-")
	if err != nil {
		return err
	}
	cmd.Stdin = bytes.NewReader(deploy.Manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply -f deploy/weft.yaml: %v\n%s", err, out)
	}
	if err := l.WaitNodesReady(ctx, timeout); err != nil {
		return err
	}
	l.logf("lab %s: Weft installed, every node Ready in %s", l.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// startNodeRuntime starts `weft-lab lab-node` for n in n's network
// namespace and a new mount namespace.
func (l *Lab) startNodeRuntime(n *NodeState, rt kubelet.Node) error {
	if err := os.MkdirAll(rt.Path(), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rt, "", "  ")
	if err != nil {
		return err
	}
	cfgPath := rt.Path("runtime.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return err
	}
	p, err := process.StartIn(n.Netns, filepath.Join(n.Dir, "node.log"),
		[]string{"unshare", "--mount", "--propagation", "private", "--", l.LabBin, kubelet.Command, "--config", cfgPath})
	if err != nil {
		return err
	}
	l.track(p)
	return nil
}

// startWorkloadControllers runs what a kubelet lab adds to the control
// plane, in the underlay namespace: kube-scheduler, and a second
// kube-controller-manager with the controllers that turn DaemonSets and
// Deployments into Pods, collect garbage and publish the cluster CA to
// every namespace (node IPAM and service accounts stay with the first).
func (l *Lab) startWorkloadControllers(bins *kubelet.Binaries) error {
	kc, err := l.Kubeconfig()
	if err != nil {
		return err
	}
	k := l.ds.(*kubeDatastore)
	procs := [][]string{
		{bins.Scheduler, "--kubeconfig=" + kc, "--leader-elect=false", "--secure-port=0"},
		{filepath.Join(controlplane.CacheDir(), controlplane.KubeControllerManager), "--kubeconfig=" + kc,
			"--controllers=daemonset,deployment,replicaset,garbagecollector,namespace,podgc,root-ca-cert-publisher,nodelifecycle",
			"--root-ca-file=" + filepath.Join(k.dir(), "pki", "ca.crt"),
			"--leader-elect=false", "--secure-port=0"},
	}
	for _, argv := range procs {
		logPath := filepath.Join(l.Dir, filepath.Base(argv[0])+"-workloads.log")
		p, err := process.StartIn(l.Underlay, logPath, argv)
		if err != nil {
			return err
		}
		l.track(p)
	}
	return nil
}

// waitNodesRegistered waits until kubelet has created every named Node.
func (l *Lab) waitNodesRegistered(ctx context.Context, names []string, timeout time.Duration) error {
	cs, err := l.KubeClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, n := range names {
			if _, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); err != nil {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes %v not registered after %s: %s", missing, timeout, process.LogTail(filepath.Join(l.Dir, missing[0], "node.log")))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitNodesReady waits until every lab node's Node is Ready: what a
// network's install makes of a new cluster.
func (l *Lab) WaitNodesReady(ctx context.Context, timeout time.Duration) error {
	cs, err := l.KubeClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		var notReady []string
		for _, n := range l.Nodes {
			node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || !nodeReady(node) {
				notReady = append(notReady, n.Name)
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes %v not Ready after %s", notReady, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ensureHostDirs creates the mount points of kubelet.HostPaths that the host
// lacks, recording each so that removeHostDirs takes them away again.
func ensureHostDirs() error {
	hostDirsMu.Lock()
	defer hostDirsMu.Unlock()
	unlock, err := hostDirsLock()
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := os.OpenFile(hostDirsRecord, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer rec.Close()
	for _, hp := range kubelet.HostPaths {
		// Record every missing component, outermost first.
		var missing []string
		for d := hp; d != "/"; d = filepath.Dir(d) {
			if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
				missing = append([]string{d}, missing...)
			}
		}
		for _, d := range missing {
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("mount point %s: %w", d, err)
			}
			fmt.Fprintln(rec, d)
		}
	}
	return nil
}

// removeHostDirs removes the recorded mount points once no kubelet lab
// is left (empty directories only: rmdir never takes a file with it).
func removeHostDirs(except string) error {
	hostDirsMu.Lock()
	defer hostDirsMu.Unlock()
	unlock, err := hostDirsLock()
	if err != nil {
		return err
	}
	defer unlock()
	others, _ := filepath.Glob(filepath.Join(RootDir, "*", kubeletMarker))
	others = slices.DeleteFunc(others, func(p string) bool { return filepath.Base(filepath.Dir(p)) == except })
	if len(others) > 0 {
		return nil
	}
	b, err := os.ReadFile(hostDirsRecord)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dirs := strings.Fields(string(b))
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, d := range slices.Compact(dirs) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove mount point %s: %w", d, err))
		}
	}
	if len(errs) == 0 {
		os.Remove(hostDirsRecord)
	}
	return errors.Join(errs...)
}

// hostDirsLock holds a machine-wide lock on the record of host dirs.
func hostDirsLock() (func(), error) {
	if err := os.MkdirAll(RootDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(hostDirsRecord+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// NodeHostPaths are the host directories kubelet nodes bind their own
// over (tests check that a lab leaves none it created).
func NodeHostPaths() []string { return slices.Clone(kubelet.HostPaths) }

// kubeletNodes reports whether the lab's nodes run kubelet (Up --kubelet).
func (l *Lab) kubeletNodes() bool {
	_, err := os.Stat(filepath.Join(l.Dir, kubeletMarker))
	return err == nil
}

// KubeletHostPath is where a kubelet node keeps what it sees at the host
// path p (one of NodeHostPaths): its own directory bound over p inside
// the node's mount namespace.
func (n *NodeState) KubeletHostPath(p string) string {
	return (&kubelet.Node{Dir: n.Dir}).HostPathSource(p)
}
