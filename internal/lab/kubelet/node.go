// Package kubelet is the program that runs one node of a `weft lab up
// --kubelet` lab (`weft-lab lab-node`, started by the lab inside the
// node's network namespace and a mount namespace of its own): a real
// containerd and kubelet, with the node's own view of the host's node
// directories and cgroups, all taken down when it stops. It also finds
// (and once per machine builds) the binaries a node runs. The lab owns
// starting and stopping it (package lab); this package owns what happens
// inside the node.
package kubelet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/lab/process"
)

// Command is the hidden weft-lab subcommand that runs one
// kubelet node (Run). The lab starts it inside the node's
// network namespace and, through unshare(1), in a mount namespace of its
// own that containerd, kubelet and every container of the node share.
const Command = "lab-node"

// Node is what Run needs to know, written by the lab as
// JSON in the node's directory.
type Node struct {
	Node       string   `json:"node"`
	Dir        string   `json:"dir"`
	NodeIP     string   `json:"nodeIP"`
	Cgroup     string   `json:"cgroup"`
	Kubeconfig string   `json:"kubeconfig"`
	Images     []string `json:"images"`
	PauseImage string   `json:"pauseImage"`
	// HostMountNS is the lab's mount namespace (/proc/self/ns/mnt), which
	// the node's must differ from before it kills what shares its own.
	HostMountNS string   `json:"hostMountNS"`
	Bins        Binaries `json:"bins"`
}

// HostPaths are the host directories a Kubernetes node keeps its state in
// (and the manifest's hostPath volumes name). Every node gets its own
// directory bound over each, inside its mount namespace, so that nodes
// on one machine do not see each other's CNI config, Weft data, kubelet
// pods or containerd shims. The host keeps empty directories as mount
// points only while a kubelet lab runs.
var HostPaths = []string{
	"/opt/cni/bin", "/etc/cni/net.d", "/var/lib/weft", "/run/weft", "/run/netns",
	"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/run/containerd",
}

// kernelDefaults are the sysctls kubelet insists on (it fails, or changes
// them host-wide). The node's mount namespace gets files with these
// values bound over the /proc/sys entries; the host's values stay.
var kernelDefaults = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

func (r *Node) Path(p ...string) string {
	return filepath.Join(append([]string{r.Dir, "k8s"}, p...)...)
}
func (r *Node) Socket() string { return r.Path("containerd.sock") }

// HostPathSource is the node's own directory for the host path hp.
func (r *Node) HostPathSource(hp string) string {
	return r.Path("fs", strings.ReplaceAll(strings.Trim(hp, "/"), "/", "_"))
}

// Run runs a kubelet node from the JSON config at path until
// SIGTERM or SIGINT, or until kubelet or containerd exits, and then takes
// all of it down: kubelet, the node's containers (by its cgroups),
// containerd and its shims, the cgroups. Mounts go with the mount
// namespace when its last process exits.
func Run(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r Node
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logf := func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "lab node %s: "+f+"\n", append([]any{r.Node}, a...)...)
	}
	var ctrd, kubelet *exec.Cmd
	exited := make(chan string, 2)
	if err := r.mounts(); err != nil {
		return err
	}
	if self, err := os.Readlink("/proc/self/ns/mnt"); err != nil || self == r.HostMountNS {
		return fmt.Errorf("not in a mount namespace of the node's own (%s): start it through unshare --mount", self)
	}
	defer func() {
		r.teardown(kubelet, ctrd, logf)
	}()
	if err := createCgroups(r.Cgroup); err != nil {
		return err
	}
	if ctrd, err = r.startContainerd(ctx, exited); err != nil {
		return err
	}
	for _, img := range r.Images {
		start := time.Now()
		out, err := exec.CommandContext(ctx, r.Bins.Ctr, "--address", r.Socket(), "--namespace", "k8s.io",
			"images", "import", img).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s into containerd: %v: %s", img, err, out)
		}
		logf("imported %s in %s", filepath.Base(img), time.Since(start).Round(time.Millisecond))
	}
	if kubelet, err = r.startKubelet(exited); err != nil {
		return err
	}
	logf("containerd and kubelet running")
	select {
	case <-ctx.Done():
		logf("stopping")
		return nil
	case what := <-exited:
		return fmt.Errorf("%s exited", what)
	}
}

// mounts gives the node its own view of the host's node directories and
// the kernel defaults kubelet wants. Each bind is shared, so that
// containers asking for HostToContainer propagation get it, as on a node.
func (r *Node) mounts() error {
	// The copies of the host's namespace mounts (other labs' and tests'
	// /run/netns entries) would keep those namespaces alive as long as
	// this node runs: drop them.
	if err := detachNamespaceMounts(); err != nil {
		return err
	}
	for _, hp := range HostPaths {
		src := r.HostPathSource(hp)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(hp, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(src, hp, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over %s: %w", src, hp, err)
		}
		if err := unix.Mount("", hp, "", unix.MS_SHARED, ""); err != nil {
			return fmt.Errorf("make %s shared: %w", hp, err)
		}
	}
	for key, v := range kernelDefaults {
		src := r.Path("sysctl", strings.ReplaceAll(key, "/", "."))
		if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(src, []byte(v+"\n"), 0o644); err != nil {
			return err
		}
		if err := unix.Mount(src, "/proc/sys/"+key, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind over /proc/sys/%s: %w", key, err)
		}
	}
	return nil
}

func (r *Node) startContainerd(ctx context.Context, exited chan<- string) (*exec.Cmd, error) {
	cfg := r.Path("containerd.toml")
	if err := os.WriteFile(cfg, []byte(r.containerdConfig()), 0o644); err != nil {
		return nil, err
	}
	cmd, err := startLogged(r.Path("containerd.log"), exited, "containerd", r.Bins.Containerd, "--config", cfg)
	if err != nil {
		return nil, err
	}
	// containerd finds its shim on PATH.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("unix", r.Socket())
		if err == nil {
			c.Close()
			return cmd, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return cmd, fmt.Errorf("containerd does not serve %s: %v; %s", r.Socket(), err, process.LogTail(r.Path("containerd.log")))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *Node) containerdConfig() string {
	q := func(s string) string { return "'" + s + "'" }
	return strings.Join([]string{
		"version = 3",
		"root = " + q(r.Path("containerd", "root")),
		"state = " + q(r.Path("containerd", "state")),
		"[grpc]",
		"  address = " + q(r.Socket()),
		"[ttrpc]",
		"  address = " + q(r.Socket()+".ttrpc"),
		"[plugins.'io.containerd.internal.v1.opt']",
		"  path = " + q(r.Path("containerd", "opt")),
		"[plugins.'io.containerd.nri.v1.nri']",
		"  disable = true",
		"[plugins.'io.containerd.grpc.v1.cri']",
		"  disable_tcp_service = true",
		"  stream_server_address = '127.0.0.1'",
		"  stream_server_port = '0'",
		"[plugins.'io.containerd.cri.v1.images']",
		"  snapshotter = 'overlayfs'",
		"  [plugins.'io.containerd.cri.v1.images'.pinned_images]",
		"    sandbox = " + q(r.PauseImage),
		"[plugins.'io.containerd.cri.v1.runtime']",
		// CAP_SYS_RESOURCE may be missing: never lower a container's
		// oom_score_adj below containerd's own.
		"  restrict_oom_score_adj = true",
		"  disable_apparmor = true",
		"  [plugins.'io.containerd.cri.v1.runtime'.cni]",
		"    bin_dirs = ['/opt/cni/bin']",
		"    conf_dir = '/etc/cni/net.d'",
		// A node's loopback plugin comes with its Kubernetes packages, not
		// with the pod network: the lab's containerd brings lo up itself.
		"    use_internal_loopback = true",
		"  [plugins.'io.containerd.cri.v1.runtime'.containerd]",
		"    default_runtime_name = 'runc'",
		"    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
		"      runtime_type = 'io.containerd.runc.v2'",
		"      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
		"        BinaryName = " + q(r.Bins.Runc),
		"        Root = " + q(r.Path("runc")),
		"        SystemdCgroup = false",
		"",
	}, "\n")
}

func (r *Node) startKubelet(exited chan<- string) (*exec.Cmd, error) {
	cfg := r.Path("kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(r.kubeletConfig()), 0o644); err != nil {
		return nil, err
	}
	return startLogged(r.Path("kubelet.log"), exited, "kubelet", r.Bins.Kubelet,
		"--config="+cfg,
		"--kubeconfig="+r.Kubeconfig,
		"--hostname-override="+r.Node,
		"--node-ip="+r.NodeIP,
		"--cert-dir="+r.Path("kubelet-pki"),
		"--root-dir=/var/lib/kubelet",
		"--v=1",
	)
}

// kubeletConfig is a kubeadm node's configuration, but for what this
// machine needs: cgroup v1 with the cgroupfs driver under the node's own
// cgroup parent (two kubelets sharing one kill each other's pods), and
// the API server reaching kubelet (logs, exec) without client
// certificates: kubelet listens only on the lab's underlay.
func (r *Node) kubeletConfig() string {
	return strings.Join([]string{
		"apiVersion: kubelet.config.k8s.io/v1beta1",
		"kind: KubeletConfiguration",
		"failCgroupV1: false",
		"cgroupDriver: cgroupfs",
		"cgroupRoot: /" + r.Cgroup,
		"containerRuntimeEndpoint: unix://" + r.Socket(),
		"address: " + r.NodeIP,
		"readOnlyPort: 0",
		"healthzBindAddress: 127.0.0.1",
		"authentication:",
		"  anonymous: {enabled: true}",
		"  webhook: {enabled: false}",
		"authorization: {mode: AlwaysAllow}",
		"failSwapOn: false",
		"protectKernelDefaults: false",
		"podPidsLimit: -1",
		// The lab's images are imported, not pulled: garbage collecting
		// them would leave pods without an image.
		"imageGCHighThresholdPercent: 100",
		"imageGCLowThresholdPercent: 99",
		"evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}",
		"",
	}, "\n")
}

// startLogged starts argv with its output in logPath; its name goes to
// exited when it exits.
func startLogged(logPath string, exited chan<- string, name string, argv ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(argv[0])+":"+os.Getenv("PATH"))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		cmd.Wait()
		exited <- name
	}()
	return cmd, nil
}

// teardown stops the node: kubelet first (no new pods), then every
// container (whatever is in the node's cgroups), containerd, whatever
// else lives in this mount namespace (shims), and removes the cgroups.
func (r *Node) teardown(kubelet, ctrd *exec.Cmd, logf func(string, ...any)) {
	stopCmd(kubelet, 10*time.Second)
	if err := KillCgroups(r.Cgroup); err != nil {
		logf("%v", err)
	}
	stopCmd(ctrd, 10*time.Second)
	if err := killMountNamespace(); err != nil {
		logf("%v", err)
	}
	if err := KillCgroups(r.Cgroup); err != nil {
		logf("%v", err)
	}
	if err := RemoveCgroups(r.Cgroup); err != nil {
		logf("%v", err)
	}
}

func stopCmd(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	process.SignalWait(cmd.Process.Pid, syscall.SIGTERM, grace)
}

// killMountNamespace kills every other process in this process's mount
// namespace (Run checked it is the node's own): containerd's
// shims, which outlive containerd by design.
func killMountNamespace() error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && ns == self {
			if err := process.SignalWait(pid, syscall.SIGKILL, time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// detachNamespaceMounts lazily unmounts every namespace file (nsfs) this
// mount namespace inherited.
func detachNamespaceMounts() error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 || g[0] != "nsfs" {
			continue
		}
		if err := unix.Unmount(f[4], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", f[4], err)
		}
	}
	return nil
}
