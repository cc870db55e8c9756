package kubestore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Watch runs a Node informer and calls fn with the full set of peers once
// the informer has synced, and again whenever the set changes, until ctx
// ends. While the API server is unreachable fn is not called, and the
// caller keeps the last set it had (and pods their routes). When the
// API server answers again, the informer is started afresh: its first list
// is the current set, so a Node deleted meanwhile, or while the agent was
// not running, is simply absent from it.
func (s *Store) Watch(ctx context.Context, fn func([]cluster.Node)) error {
	w := &watcher{s: s, fn: fn, warned: map[string]bool{}}
	for {
		if err := w.run(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Info("the API server answers again; relisting nodes")
	}
}

// watcher is one Watch call: what it delivered last.
type watcher struct {
	s         *Store
	fn        func([]cluster.Node)
	last      []cluster.Node
	delivered bool
	warned    map[string]bool
}

// probeEvery is how often a failing watch checks whether the API server
// is back. The reflector retries by itself too, but its back-off grows to
// a minute, far too long for a node that joined during an outage.
const probeEvery = time.Second

// run runs one informer until ctx ends (nil) or the API server comes back
// after a failure (nil, with ctx alive: run again).
func (w *watcher) run(ctx context.Context) error {
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	ni, err := w.s.newNodeInformer(ictx)
	if err != nil {
		return err
	}
	ni.start(ictx)
	return w.deliver(ctx, ni)
}

// nodeInformer is one informer of Nodes, with what it learnt of the API
// server on the way.
type nodeInformer struct {
	inf cache.SharedIndexInformer
	// kick says the Nodes changed (or the first list is in).
	kick chan struct{}
	// failed stays set once anything of this informer failed: a watch
	// that the reflector resumed by itself after an outage is not trusted
	// to have missed nothing; once the API server answers, the informer
	// starts afresh from a list.
	failed atomic.Bool
}

// newNodeInformer makes an informer of Nodes (slimmed) whose every list,
// watch and watch error is noted in the store's health, and which kicks
// on every change. ictx is the informer's own lifetime.
func (s *Store) newNodeInformer(ictx context.Context) (*nodeInformer, error) {
	ni := &nodeInformer{kick: make(chan struct{}, 1)}
	note := func(err error) {
		if err != nil {
			ni.failed.Store(true)
		}
		s.noteWatch(err)
	}
	// The reflector retries a refused watch quietly; these wrappers are
	// where the store learns that the API server is away, and back.
	nodes := s.nodes
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := nodes.List(ctx, o)
			if err != nil {
				note(fmt.Errorf("list nodes: %w", err))
				return nil, err
			}
			note(nil)
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := nodes.Watch(ctx, o)
			note(err)
			return wi, err
		},
	}
	ni.inf = cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if err := ni.inf.SetTransform(slim); err != nil {
		return nil, err
	}
	if err := ni.inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if ictx.Err() == nil {
			note(err)
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		return nil, err
	}
	if _, err := ni.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { ni.poke() },
		UpdateFunc: func(any, any) { ni.poke() },
		DeleteFunc: func(any) { ni.poke() },
	}); err != nil {
		return nil, err
	}
	return ni, nil
}

func (ni *nodeInformer) poke() {
	select {
	case ni.kick <- struct{}{}:
	default:
	}
}

// start runs the informer until ictx ends, and kicks once it has synced:
// the first set, also when there are no Nodes.
func (ni *nodeInformer) start(ictx context.Context) {
	go ni.inf.RunWithContext(ictx)
	go func() {
		if cache.WaitForCacheSync(ictx.Done(), ni.inf.HasSynced) {
			ni.poke()
		}
	}()
}

// deliver hands fn the set of peers whenever the informer's set changes,
// until ctx ends (nil) or, after a failure of the informer, the API
// server answers again (nil: the caller starts a new informer).
func (w *watcher) deliver(ctx context.Context, ni *nodeInformer) error {
	started := time.Now()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	dirty := true
	for {
		if dirty && ni.inf.HasSynced() {
			cur := w.s.snapshot(ni.inf.GetStore(), w.warned)
			if !w.delivered || !slices.Equal(cur, w.last) {
				w.fn(cur)
				w.last, w.delivered = cur, true
			}
			dirty = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ni.kick:
			dirty = true
		case <-tick.C:
			// (Not right after a start: a watch that fails while lists
			// work must not turn into a relist every second.)
			if ni.failed.Load() && time.Since(started) > 3*probeEvery && w.s.apiServerAnswers(ctx) {
				return nil
			}
		}
	}
}

// apiServerAnswers makes the cheapest request the agent's RBAC allows.
func (s *Store) apiServerAnswers(ctx context.Context) bool {
	octx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.nodes.List(octx, metav1.ListOptions{Limit: 1})
	return err == nil
}

// watchErrPrefix marks errors of the informer, so that its recovery clears
// them and nothing else.
const watchErrPrefix = "watch nodes: "

// noteWatch records an informer error, or clears the last one on success.
func (s *Store) noteWatch(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = fmt.Errorf("%s%w", watchErrPrefix, err)
		return
	}
	s.lastContact = time.Now()
	if s.lastErr != nil && strings.HasPrefix(s.lastErr.Error(), watchErrPrefix) {
		s.lastErr = nil
	}
}

func (s *Store) snapshot(st cache.Store, warned map[string]bool) []cluster.Node {
	var out []cluster.Node
	for _, o := range st.List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		n, err := nodeFrom(u)
		var rec cluster.Node
		if err == nil {
			rec, ok, err = record(n)
		}
		if err != nil {
			// One bad Node must not stop the others from being routed.
			if !warned[err.Error()] {
				s.log.Warn("ignoring node with a malformed Weft record", "node", u.GetName(), "err", err)
				warned[err.Error()] = true
			}
			continue
		}
		if ok {
			out = append(out, rec)
		}
	}
	slices.SortFunc(out, func(a, b cluster.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}
