// Package podsync is the program that plays kubelet for the Pod objects
// bound to the nodes of a `--datastore kubernetes` lab (`weft-lab
// lab-podsync`, which the lab starts in its underlay namespace): each pod
// gets a network namespace attached through its node's CNI configuration,
// an echo server on its declared ports, and the status a kubelet would
// write. It owns its records under the lab's directory and the pods'
// namespaces, and nothing else of the lab.
package podsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/internal/lab"
)

// podSyncResync bounds how long a pod that could not be realised (or is
// bound to a node that has not joined yet) waits for its next attempt.
const podSyncResync = 2 * time.Second

// Options is what the pod sync process is told by the lab.
type Options struct {
	Lab        string // the lab's name: its state names its nodes
	Kubeconfig string // the lab's admin kubeconfig
	Netcheck   string // the echo server the pods' containerPorts are served by
}

// syncer realises Pod objects as a kubelet would, with what the lab has
// instead of containers: a named namespace attached through the node's CNI
// configuration by libcni, and a netcheck echo server on each declared
// port. What it made is recorded under dir, one file per pod, so that a
// restarted sync (and Down) finds it.
type syncer struct {
	opts Options
	dir  string
	cs   kubernetes.Interface
	pods corelisters.PodLister
	// failed holds the last failure reported for each pod, so that a pod
	// that keeps failing gets one event per distinct reason.
	failed map[types.UID]string
}

// Run runs the pod sync until SIGTERM or SIGINT. Stopping it leaves
// the pods as they are, as stopping kubelet leaves its containers; Down
// removes them with the lab.
func Run(opts Options) error {
	if opts.Lab == "" || opts.Kubeconfig == "" {
		return errors.New("--lab and --kubeconfig are required")
	}
	if err := lab.CheckName(opts.Lab); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, err)
	}
	// A burst of pods means a status update and maybe an event each.
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	s := &syncer{opts: opts, dir: podSyncDir(opts.Lab), cs: cs, failed: map[types.UID]string{}}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().Pods()
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		return err
	}
	s.pods = inf.Lister()
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return nil // stopped before the first list
	}
	syncLogf("pod sync of lab %s: watching pods", opts.Lab)
	t := time.NewTicker(podSyncResync)
	defer t.Stop()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			syncLogf("pod sync of lab %s: stopping (pods stay)", opts.Lab)
			return nil
		case <-kick:
		case <-t.C:
		}
	}
}

func syncLogf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05.000 ")+format+"\n", args...)
}

// podSyncDir holds the pod sync's records and its echo servers' logs.
func podSyncDir(labName string) string { return filepath.Join(lab.Dir(labName), "podsync") }

// reconcile makes the lab match the Pod objects once: pods that are gone
// or being deleted, or whose node left the lab, are torn down first (a
// pod recreated under the same name then finds its namespace name free),
// then every pod bound to a lab node that is not realised yet is set up,
// then statuses are written.
func (s *syncer) reconcile(ctx context.Context) {
	l, err := lab.Open(s.opts.Lab, nil)
	if err != nil {
		syncLogf("lab state: %v", err)
		return
	}
	all, err := s.pods.List(labels.Everything())
	if err != nil {
		syncLogf("list pods: %v", err)
		return
	}
	recs, err := s.records()
	if err != nil {
		syncLogf("records: %v", err)
	}
	byUID := map[types.UID]*corev1.Pod{}
	for _, p := range all {
		byUID[p.UID] = p
	}
	s.teardownGone(ctx, l, recs, byUID)
	for _, p := range all {
		if ctx.Err() != nil {
			return
		}
		s.realise(ctx, l, p, recs[p.UID])
	}
	for uid := range s.failed {
		if byUID[uid] == nil {
			delete(s.failed, uid)
		}
	}
}

// teardownGone tears down, and drops from recs, what was made for pods
// that are gone, being deleted or finished, or whose node left the lab
// (as a node's containers go with it; the API server's pod GC deletes
// the object).
func (s *syncer) teardownGone(ctx context.Context, l *lab.Lab, recs map[types.UID]*podRecord, byUID map[types.UID]*corev1.Pod) {
	for uid, r := range recs {
		_, nodeErr := l.Node(r.Node)
		if p := byUID[uid]; p == nil || p.DeletionTimestamp != nil || terminal(p) || nodeErr != nil {
			if err := s.teardown(ctx, l, r); err != nil {
				syncLogf("pod %s/%s: teardown: %v", r.Namespace, r.Name, err)
				continue
			}
			delete(recs, uid)
		}
	}
}

// realise brings pod p, if it is the sync's, to Running: host-network
// pods on their node's address, others in a namespace of their own
// (made now unless r records it made already, or redone when r records
// a setup a crash interrupted). A failure is reported on the pod, and
// retried at the next reconcile.
func (s *syncer) realise(ctx context.Context, l *lab.Lab, p *corev1.Pod, r *podRecord) {
	n := s.nodeOf(l.State, p)
	if n == nil {
		return
	}
	if p.DeletionTimestamp != nil {
		if r == nil {
			s.finishDelete(ctx, p)
		}
		return
	}
	if terminal(p) {
		return
	}
	if p.Spec.HostNetwork {
		s.writeRunning(ctx, p, n, n.UnderlayIP)
		return
	}
	if r != nil && !r.IP.IsValid() {
		// A setup that a crash interrupted: start it over.
		if err := s.teardown(ctx, l, r); err != nil {
			s.fail(ctx, p, n, err)
			return
		}
		r = nil
	}
	if r == nil {
		var err error
		if r, err = s.setup(ctx, l, n, p); err != nil {
			s.fail(ctx, p, n, err)
			return
		}
		syncLogf("pod %s/%s on %s: namespace %s, %s", p.Namespace, p.Name, n.Name, r.Netns, r.IP)
	} else if err := s.ensureServer(r); err != nil {
		s.fail(ctx, p, n, err)
		return
	}
	delete(s.failed, p.UID)
	s.writeRunning(ctx, p, n, r.IP)
}

// nodeOf is the lab node p is bound to, or nil when p is not the pod
// sync's: bound elsewhere or not yet, or one of the lab's own pods (made by
// `lab up` with the name default/<node>-pN, whose Pod object, if someone
// registers one, describes what the lab made already).
func (s *syncer) nodeOf(st *lab.State, p *corev1.Pod) *lab.NodeState {
	if p.Spec.NodeName == "" {
		return nil
	}
	n, err := st.Node(p.Spec.NodeName)
	if err != nil {
		return nil
	}
	if p.Namespace == "default" {
		for _, own := range n.Pods {
			if own.Name == p.Name {
				return nil
			}
		}
	}
	return n
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
