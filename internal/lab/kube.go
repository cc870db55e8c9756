package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftnet/weft/deploy"
	"github.com/weftnet/weft/internal/lab/controlplane"
	"github.com/weftnet/weft/internal/lab/process"
)

// KubeCommand is the hidden weft-lab subcommand that runs the lab's
// Kubernetes control plane (RunKube) inside the underlay namespace.
const KubeCommand = "lab-kube"

// kubeDatastore is a real Kubernetes control plane (etcd, kube-apiserver,
// kube-controller-manager with node IPAM) supervised by a `weft-lab lab-kube`
// process in the underlay namespace, the API server listening on the
// underlay bridge's address. The lab plays kubelet: it registers a Node
// for every node before its agent starts, and the controller-manager gives
// it its podCIDR, as in a kubeadm cluster.
type kubeDatastore struct {
	lab *Lab
}

func (k *kubeDatastore) dir() string        { return filepath.Join(k.lab.State.Dir, "kube") }
func (k *kubeDatastore) kubeconfig() string { return filepath.Join(k.dir(), "admin.kubeconfig") }
func (k *kubeDatastore) readyFile() string  { return filepath.Join(k.dir(), "ready") }

func (k *kubeDatastore) Start(ctx context.Context) error {
	s := k.lab.State
	d := &s.Datastore
	d.Kind = "kubernetes"
	d.DataDir = k.dir()
	d.Log = filepath.Join(s.Dir, "kube.log")
	if process.Alive(d.PID) {
		return fmt.Errorf("datastore already runs (pid %d)", d.PID)
	}
	// Build (once per machine) here, where the user sees it, rather than
	// silently inside the supervisor.
	if _, err := os.Stat(controlplane.CacheDir()); err != nil {
		k.lab.logf("lab %s: building the Kubernetes control plane into %s (the first build takes about 12 minutes)", s.Name, controlplane.CacheDir())
	}
	if _, err := controlplane.Binaries(); err != nil {
		return err
	}
	os.Remove(k.readyFile())
	p, err := k.lab.startDatastoreProcess("the Kubernetes control plane", []string{s.LabBin, KubeCommand,
		"--dir", k.dir(), "--address", s.DatastoreIP().String(),
		"--cluster-cidr", s.ClusterCIDR.String(), "--subnet-len", strconv.Itoa(s.SubnetLen)})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if b, err := os.ReadFile(k.readyFile()); err == nil {
			d.Endpoint = strings.TrimSpace(string(b))
			if err := s.save(); err != nil {
				return err
			}
			if k.lab.kubeletNodes() {
				return nil // kubelet nodes: Weft is installed with its manifest
			}
			return k.applyAccess(ctx)
		}
		select {
		case <-p.Done:
			return fmt.Errorf("the Kubernetes control plane exited: %s", process.LogTail(d.Log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Kubernetes control plane is not ready after 3m: %s", process.LogTail(d.Log))
		}
	}
}

// AgentFlags point the agent at a kubeconfig with its own token (see
// RegisterNode): agents run with the manifest's RBAC, not as admin.
func (k *kubeDatastore) AgentFlags(n *NodeState) []string {
	return []string{"--datastore", "kubernetes", "--kubeconfig", agentKubeconfig(n)}
}

func agentKubeconfig(n *NodeState) string { return filepath.Join(n.Dir, "kubeconfig") }

func (k *kubeDatastore) Stop() error {
	return k.lab.stopDatastoreProcess("the Kubernetes control plane", 60*time.Second)
}

// Client is an admin client of the lab's API server whose connections are
// made inside the underlay namespace.
func (k *kubeDatastore) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", k.kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.Dial = DialIn(k.lab.Underlay)
	return kubernetes.NewForConfig(cfg)
}

// RegisterNode creates node's Node object, as kubelet does when it starts,
// and the node's weft Pod, as the DaemonSet controller would; the agent's
// kubeconfig carries a token of the manifest's ServiceAccount bound to
// that Pod, so the API server knows which Node the agent runs on (the
// manifest's admission policy lets it write that Node only).
func (k *kubeDatastore) RegisterNode(ctx context.Context, n *NodeState) error {
	cs, err := k.Client()
	if err != nil {
		return err
	}
	if err := k.registerNode(ctx, cs, n); err != nil {
		return err
	}
	return k.writeAgentKubeconfig(ctx, cs, n)
}

func (k *kubeDatastore) registerNode(ctx context.Context, cs kubernetes.Interface, n *NodeState) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.UnderlayIP.String()},
		}},
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", n.Name, err)
	}
	return nil
}

// Forget deletes the node's Node object: what `kubectl delete node` does.
func (k *kubeDatastore) Forget(ctx context.Context, node string) error {
	cs, err := k.Client()
	if err != nil {
		return err
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", node, err)
	}
	return nil
}

// RunKube is the lab's control-plane process: it runs etcd,
// kube-apiserver (on address) and kube-controller-manager from dir until
// SIGTERM or SIGINT, then stops them, keeping dir for the next start.
func RunKube(dir string, address netip.Addr, clusterCIDR netip.Prefix, subnetLen int) error {
	if dir == "" || !address.IsValid() || !clusterCIDR.IsValid() {
		return errors.New("--dir, --address and --cluster-cidr are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c, err := controlplane.Start(ctx, controlplane.Options{
		Dir: dir, Address: address, ClusterCIDR: clusterCIDR, NodeCIDRMaskSize: subnetLen,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(c.URL+"\n"), 0o644); err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "lab control plane: stopping")
	os.Remove(filepath.Join(dir, "ready"))
	return nil
}

// KubeClient returns an admin client of the lab's API server, connecting
// from inside the underlay namespace, for labs whose datastore is
// Kubernetes: what `kubectl` is to an operator.
func (l *Lab) KubeClient() (kubernetes.Interface, error) {
	k, ok := l.ds.(*kubeDatastore)
	if !ok {
		return nil, fmt.Errorf("lab %s's datastore is not Kubernetes", l.Name)
	}
	return k.Client()
}

// applyAccess creates the manifest's ServiceAccount, RBAC and admission
// policy: the agents' access is then exactly what a cluster gives them.
// The DaemonSet and ConfigMap are left out: the lab runs the agents itself.
func (k *kubeDatastore) applyAccess(ctx context.Context) error {
	cs, err := k.Client()
	if err != nil {
		return err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(deploy.Manifest)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read deploy/weft.yaml: %w", err)
		}
		if !bytes.Contains(doc, []byte("\nkind:")) && !bytes.HasPrefix(doc, []byte("kind:")) {
			continue // comments only
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return fmt.Errorf("decode deploy/weft.yaml: %w", err)
		}
		opts := metav1.CreateOptions{}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, opts)
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
		case *admissionv1.ValidatingAdmissionPolicy:
			_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, o, opts)
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, o, opts)
		default:
			continue
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("apply %T from deploy/weft.yaml: %w", obj, err)
		}
	}
}

// writeAgentKubeconfig makes node's weft Pod (if needed) and writes a
// kubeconfig with a token bound to it.
func (k *kubeDatastore) writeAgentKubeconfig(ctx context.Context, cs kubernetes.Interface, n *NodeState) error {
	pods := cs.CoreV1().Pods("kube-system")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-" + n.Name, Namespace: "kube-system",
			Labels: map[string]string{"app.kubernetes.io/name": "weft"}},
		Spec: corev1.PodSpec{
			NodeName: n.Name, ServiceAccountName: "weft", HostNetwork: true,
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:  []corev1.Container{{Name: "weft", Image: "weftnet/weft:latest"}},
		},
	}
	p, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		p, err = pods.Get(ctx, pod.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("weft pod of %s: %w", n.Name, err)
	}
	exp := int64(24 * 3600)
	tr, err := cs.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "weft", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for the agent of %s: %w", n.Name, err)
	}
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{"lab": {
			Server: k.lab.State.Datastore.Endpoint, CertificateAuthority: filepath.Join(k.dir(), "pki", "ca.crt")}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"weft": {Token: tr.Status.Token}},
		Contexts:       map[string]*clientcmdapi.Context{"weft": {Cluster: "lab", AuthInfo: "weft"}},
		CurrentContext: "weft",
	}
	return clientcmd.WriteToFile(cfg, agentKubeconfig(n))
}
