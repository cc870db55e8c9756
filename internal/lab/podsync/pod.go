package podsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lab/process"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/netns"
)

// podRecord is what the pod sync made for one Pod object, written before
// it makes anything, so that whatever a crash interrupted is torn down.
type podRecord struct {
	UID         types.UID  `json:"uid"`
	Namespace   string     `json:"namespace"`
	Name        string     `json:"name"`
	Node        string     `json:"node"`
	Netns       string     `json:"netns"`
	ContainerID string     `json:"containerID"`
	IP          netip.Addr `json:"ip,omitzero"`
	// Ports are served by one netcheck process (TCP and UDP on each).
	Ports     []int `json:"ports,omitempty"`
	ServerPID int   `json:"serverPID,omitempty"`
}

func (s *syncer) recordPath(uid types.UID) string {
	return filepath.Join(s.dir, string(uid)+".json")
}

func (s *syncer) serverLog(uid types.UID) string {
	return filepath.Join(s.dir, string(uid)+".log")
}

func (s *syncer) save(r *podRecord) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if _, err := atomicfile.Write(s.recordPath(r.UID), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record of pod %s/%s: %w", r.Namespace, r.Name, err)
	}
	return nil
}

// records reads every pod record; a torn one is skipped (and reported).
func (s *syncer) records() (map[types.UID]*podRecord, error) {
	paths, err := filepath.Glob(filepath.Join(s.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	recs := map[types.UID]*podRecord{}
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r podRecord
		if err := json.Unmarshal(b, &r); err != nil || r.UID == "" {
			errs = append(errs, fmt.Errorf("%s: %v", p, err))
			continue
		}
		recs[r.UID] = &r
	}
	return recs, errors.Join(errs...)
}

// podNetns names a pod's namespace "<lab>-<node>-<namespace>.<name>": the
// lab's prefix (so Down removes it), the node, and the Pod's own name. The
// dot keeps it apart from the lab's own pods ("<lab>-<node>-pN"), as a
// Kubernetes namespace name holds no dot. Very long names fall back to
// the pod's UID.
func podNetns(labName, node string, p *corev1.Pod) string {
	name := fmt.Sprintf("%s-%s-%s.%s", labName, node, p.Namespace, p.Name)
	if len(name) > 200 {
		name = fmt.Sprintf("%s-%s-%s.%s", labName, node, p.Namespace, p.UID)
	}
	return name
}

// servedPorts are the port numbers p declares for TCP or UDP; other
// protocols (SCTP) are not served.
func servedPorts(p *corev1.Pod) []int {
	var ports []int
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		for _, cp := range c.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if (proto == corev1.ProtocolTCP || proto == corev1.ProtocolUDP) && !slices.Contains(ports, int(cp.ContainerPort)) {
				ports = append(ports, int(cp.ContainerPort))
			}
		}
	}
	slices.Sort(ports)
	return ports
}

// podRuntimeConf is what a container runtime passes the plugin for p's
// sandbox, CNI_ARGS included.
func podRuntimeConf(r *podRecord) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: r.ContainerID,
		NetNS:       netns.Path(r.Netns),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", r.Namespace},
			{"K8S_POD_NAME", r.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", r.ContainerID},
			{"K8S_POD_UID", string(r.UID)},
		},
	}
}

// setup realises p on node n: its namespace, CNI ADD, its echo server. On
// failure it undoes what it made.
func (s *syncer) setup(ctx context.Context, l *lab.Lab, n *lab.NodeState, p *corev1.Pod) (_ *podRecord, err error) {
	r := &podRecord{
		UID: p.UID, Namespace: p.Namespace, Name: p.Name, Node: n.Name,
		Netns: podNetns(l.Name, n.Name, p), ContainerID: l.Name + "-" + string(p.UID),
		Ports: servedPorts(p),
	}
	if len(r.Ports) > 0 {
		if _, err := os.Stat(s.opts.Netcheck); err != nil {
			return nil, fmt.Errorf("the echo server for its ports: %w (build it with `make build`: bin/netcheck beside weft-lab)", err)
		}
	}
	if netns.Exists(r.Netns) {
		// Another pod of that name is still being torn down.
		return nil, fmt.Errorf("namespace %s is still in use", r.Netns)
	}
	if err := s.save(r); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if terr := s.teardown(context.WithoutCancel(ctx), l, r); terr != nil {
				err = fmt.Errorf("%w (and undoing it: %v)", err, terr)
			}
		}
	}()
	pn, err := netns.Create(r.Netns)
	if err != nil {
		return r, err
	}
	pn.Close()
	if r.IP, err = l.Attach(ctx, n, podRuntimeConf(r)); err != nil {
		return r, fmt.Errorf("CNI ADD: %w", err)
	}
	if err := s.save(r); err != nil {
		return r, err
	}
	return r, s.ensureServer(r)
}

// ensureServer starts r's echo server unless it runs, and returns once it
// listens on every port (TCP and UDP), or fails if it exits first.
func (s *syncer) ensureServer(r *podRecord) error {
	if len(r.Ports) == 0 || process.Alive(r.ServerPID) {
		return nil
	}
	argv := []string{s.opts.Netcheck, "serve"}
	for _, p := range r.Ports {
		argv = append(argv, strconv.Itoa(p))
	}
	p, err := process.StartIn(r.Netns, s.serverLog(r.UID), argv)
	if err != nil {
		return err
	}
	r.ServerPID = p.Pid()
	if err := s.save(r); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := unboundPorts(r.ServerPID, r.Ports)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-p.Done:
			return fmt.Errorf("echo server on ports %v exited: %s", r.Ports, process.LogTail(s.serverLog(r.UID)))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("echo server does not listen on %v after 10s", missing)
		}
	}
}

// unboundPorts are the ports on which the namespace of pid has no TCP
// listener or no UDP socket yet, read from the kernel's socket tables as
// that process sees them.
func unboundPorts(pid int, ports []int) []string {
	bound := map[string]bool{}
	for _, f := range []struct{ file, proto, state string }{
		{"tcp", "tcp", "0A"}, {"tcp6", "tcp", "0A"}, {"udp", "udp", ""}, {"udp6", "udp", ""},
	} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f.file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || (f.state != "" && fields[3] != f.state) {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if port, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil {
				bound[fmt.Sprintf("%d/%s", port, f.proto)] = true
			}
		}
	}
	var missing []string
	for _, p := range ports {
		for _, proto := range []string{"tcp", "udp"} {
			if k := fmt.Sprintf("%d/%s", p, proto); !bound[k] {
				missing = append(missing, k)
			}
		}
	}
	return missing
}

// teardown removes what r records: the echo server, the attachment (CNI
// DEL, which releases the address), the namespace, then the record. A node
// that left the lab took its attachments with it: then only the namespace
// goes.
func (s *syncer) teardown(ctx context.Context, l *lab.Lab, r *podRecord) error {
	if err := process.SignalWait(r.ServerPID, syscall.SIGTERM, 5*time.Second); err != nil {
		return fmt.Errorf("stop echo server: %w", err)
	}
	// A node that left, or whose agent took its CNI configuration away
	// (`weft agent --cleanup`), has nothing left to DEL.
	if n, err := l.Node(r.Node); err == nil && netns.Exists(n.Netns) && exists(filepath.Join(n.CNIConfDir(), names.ConfListName)) {
		if err := l.Detach(ctx, n, podRuntimeConf(r)); err != nil {
			return fmt.Errorf("CNI DEL: %w", err)
		}
	}
	if err := netns.Delete(r.Netns); err != nil {
		return err
	}
	os.Remove(s.serverLog(r.UID))
	if err := os.Remove(s.recordPath(r.UID)); err != nil && !os.IsNotExist(err) {
		return err
	}
	syncLogf("pod %s/%s on %s: removed namespace %s and released %s", r.Namespace, r.Name, r.Node, r.Netns, r.IP)
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
