package lab

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab/process"
)

// Datastore is the lab's datastore as the lab drives it: started inside
// the underlay namespace, pointed at by each agent's flags, stopped (and
// started again, keeping its data). The embedded etcd is the one kind
// today; a Kubernetes API server is another (a file of its own).
type Datastore interface {
	// Start runs the datastore and returns once it serves.
	Start(ctx context.Context) error
	// AgentFlags are the `weft agent` flags that connect node's agent.
	AgentFlags(node *NodeState) []string
	// Stop stops the datastore; its data stays for the next Start.
	Stop() error
}

// DatastoreKinds lists the datastores the lab can run.
var DatastoreKinds = []string{"etcd", "kubernetes"}

func (l *Lab) newDatastore(kind string) (Datastore, error) {
	switch kind {
	case "etcd":
		return &etcdDatastore{lab: l}, nil
	case "kubernetes":
		return &kubeDatastore{lab: l}, nil
	}
	return nil, fmt.Errorf("unknown lab datastore %q (have %v)", kind, DatastoreKinds)
}

// nodeRegistrar is a datastore in which a node must exist before its agent
// starts: in Kubernetes, kubelet registers the Node.
type nodeRegistrar interface {
	RegisterNode(ctx context.Context, n *NodeState) error
}

// nodeProvisioner is a datastore that needs a node's credentials made
// before its agent ever starts, as an operator makes them when the machine
// is installed: with etcd, the node's client certificate and role.
type nodeProvisioner interface {
	ProvisionNode(ctx context.Context, n *NodeState) error
}

// nodeForgetter is a datastore in which a node that leaves must also be
// deleted by the operator, beyond what `weft agent --cleanup` removes: in
// Kubernetes, `kubectl delete node`.
type nodeForgetter interface {
	Forget(ctx context.Context, node string) error
}

// startDatastoreProcess starts the datastore's process (argv) in the
// underlay namespace, its output appended to the datastore's log, and
// records its pid, so that Stop and Down find it.
func (l *Lab) startDatastoreProcess(what string, argv []string) (*process.Proc, error) {
	d := &l.State.Datastore
	p, err := process.StartIn(l.Underlay, d.Log, argv)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	l.track(p)
	d.PID = p.Pid()
	return p, l.save()
}

// stopDatastoreProcess stops the datastore's process: SIGTERM, and
// SIGKILL if it has not gone after grace. Its data stays for the next
// start.
func (l *Lab) stopDatastoreProcess(what string, grace time.Duration) error {
	d := &l.State.Datastore
	if err := process.SignalWait(d.PID, syscall.SIGTERM, grace); err != nil {
		return fmt.Errorf("stop %s: %w", what, err)
	}
	d.PID = 0
	return l.save()
}
