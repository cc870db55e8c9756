package lab

import (
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab/process"
)

// PodSyncCommand is the hidden weft-lab subcommand that plays kubelet for
// the Pod objects bound to a `--datastore kubernetes` lab's nodes
// (podsync.Run). It runs in the underlay namespace, where the API server
// listens, and reaches into node and pod namespaces by their paths.
const PodSyncCommand = "lab-podsync"

// podSyncLog is the pod sync's log in the lab's directory.
func (s *State) podSyncLog() string { return filepath.Join(s.Dir, "podsync.log") }

// startPodSync starts the process that realises Pod objects bound to the
// lab's nodes, in labs whose datastore is a Kubernetes API server that the
// lab's own agents use (a --kubelet lab has real kubelets for that). It
// runs in the underlay namespace, where the API server listens.
func (l *Lab) startPodSync() error {
	k, ok := l.ds.(*kubeDatastore)
	if !ok || l.kubeletNodes() {
		return nil
	}
	s := l.State
	if process.Alive(s.PodSyncPID) {
		return nil
	}
	argv := []string{s.LabBin, PodSyncCommand, "--lab", s.Name, "--kubeconfig", k.kubeconfig(),
		"--netcheck", filepath.Join(filepath.Dir(s.LabBin), "netcheck")}
	p, err := process.StartIn(s.Underlay, s.podSyncLog(), argv)
	if err != nil {
		return fmt.Errorf("start the pod sync: %w", err)
	}
	l.track(p)
	s.PodSyncPID = p.Pid()
	l.logf("lab %s: Pod objects bound to its nodes are realised here (log %s)", s.Name, s.podSyncLog())
	return s.save()
}

// stopPodSync stops lab name's pod sync before Down removes the rest, so
// that it makes nothing while Down looks for what to remove.
func stopPodSync(name string) error {
	s, err := loadState(name)
	if err != nil || s.PodSyncPID == 0 {
		return nil // no state: Down finds the process in the underlay
	}
	if err := process.SignalWait(s.PodSyncPID, syscall.SIGTERM, 10*time.Second); err != nil {
		return fmt.Errorf("stop the pod sync: %w", err)
	}
	return nil
}
