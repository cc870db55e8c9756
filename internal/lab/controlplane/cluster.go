package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options say where and how the control plane runs.
type Options struct {
	// NetNS is the path of the network namespace to run every process in;
	// empty runs them in the caller's namespace, on loopback.
	NetNS string
	// Address is where kube-apiserver listens and what it advertises; it
	// must be an address of NetNS. Default 127.0.0.1.
	Address netip.Addr
	// NoNodeIPAM runs kube-controller-manager without
	// --allocate-node-cidrs: a cluster whose Nodes get no podCIDR.
	NoNodeIPAM bool
	// ClusterCIDR and NodeCIDRMaskSize configure node IPAM; defaults
	// 10.244.0.0/16 and 24, as `kubeadm init --pod-network-cidr` gives.
	ClusterCIDR      netip.Prefix
	NodeCIDRMaskSize int
	// Prefix starts the name of the control plane's temporary directory.
	Prefix string
	// Dir, when set, holds the control plane's files instead of a
	// temporary directory, and keeps them after Stop: a later Start with
	// the same Dir brings the same cluster back (PKI, ports, etcd data).
	Dir string
	// Logf, when set, is told what happens (binaries building, start, stop).
	Logf func(format string, args ...any)
}

// Cluster is a running control plane.
type Cluster struct {
	opts Options
	pki  *pki
	// Dir holds the PKI, etcd's data, kubeconfigs and the process logs.
	Dir string
	// URL is the API server's address, https://Address:port.
	URL string
	// Kubeconfig is an admin (system:masters) kubeconfig for URL.
	Kubeconfig string

	bins     string
	apiPort  int
	etcdURL  string
	etcdPeer string

	etcd, apiserver, kcm *proc
}

// Start builds the binaries if needed and starts etcd, kube-apiserver and
// kube-controller-manager, returning once the API server is ready and the
// controller-manager has created the default ServiceAccount. On error,
// everything started is stopped and removed.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if !opts.Address.IsValid() {
		opts.Address = netip.MustParseAddr("127.0.0.1")
	}
	if !opts.ClusterCIDR.IsValid() {
		opts.ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	}
	if opts.NodeCIDRMaskSize == 0 {
		opts.NodeCIDRMaskSize = 24
	}
	if opts.Prefix == "" {
		opts.Prefix = "weft-kube"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	bins, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", opts.Prefix+"-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, Dir: dir, bins: bins}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.loadOrMakePKI(); err != nil {
		return nil, fmt.Errorf("make the control plane's PKI: %w", err)
	}
	if err := c.loadOrPickPorts(); err != nil {
		return nil, err
	}
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	c.URL = "https://" + net.JoinHostPort(opts.Address.String(), strconv.Itoa(c.apiPort))
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := c.writeKubeconfig(c.Kubeconfig, c.URL, "admin"); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.startControllerManager(ctx); err != nil {
		return nil, err
	}
	opts.Logf("controlplane: control plane ready at %s (dir %s)", c.URL, dir)
	return c, nil
}

// loadOrMakePKI reuses the PKI of a kept Dir, or makes one.
func (c *Cluster) loadOrMakePKI() error {
	dir := filepath.Join(c.Dir, "pki")
	if _, err := os.Stat(filepath.Join(dir, "sa.pub")); err == nil {
		c.pki = &pki{dir: dir}
		return nil
	}
	p, err := newPKI(dir)
	if err != nil {
		return err
	}
	c.pki = p
	hosts := []string{"127.0.0.1", c.opts.Address.String(), "localhost", "kubernetes",
		"kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1"}
	if err := p.issue("apiserver", "kube-apiserver", nil, hosts); err != nil {
		return err
	}
	if err := p.issue("admin", "weft-test-admin", []string{"system:masters"}, nil); err != nil {
		return err
	}
	return p.serviceAccountKeys()
}

// ports are the control plane's TCP ports, kept in Dir so that a restarted
// cluster keeps its URL (kubeconfigs handed out stay valid).
type ports struct {
	EtcdClient, EtcdPeer, APIServer int
}

func (c *Cluster) loadOrPickPorts() error {
	path := filepath.Join(c.Dir, "ports.json")
	var p ports
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	} else {
		for _, pp := range []*int{&p.EtcdClient, &p.EtcdPeer} {
			if *pp, err = freePort(c.opts.NetNS, "127.0.0.1"); err != nil {
				return fmt.Errorf("find a port for etcd: %w", err)
			}
		}
		if p.APIServer, err = freePort(c.opts.NetNS, c.opts.Address.String()); err != nil {
			return fmt.Errorf("find a port for kube-apiserver: %w", err)
		}
		b, _ := json.Marshal(p)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
	}
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(p.EtcdClient)
	c.etcdPeer = "http://127.0.0.1:" + strconv.Itoa(p.EtcdPeer)
	c.apiPort = p.APIServer
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	var err error
	c.etcd, err = startProc(c.opts.NetNS, "etcd", filepath.Join(c.Dir, "etcd.log"), filepath.Join(c.bins, Etcd),
		"--name=kubetest",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+c.etcdURL,
		"--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+c.etcdPeer,
		"--initial-advertise-peer-urls="+c.etcdPeer,
		"--initial-cluster=kubetest="+c.etcdPeer,
		"--unsafe-no-fsync", // a test's data need not survive a power cut
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: DialContextIn(c.opts.NetNS)}, Timeout: 2 * time.Second}
	return c.waitFor(ctx, c.etcd, 30*time.Second, func() error {
		resp, err := hc.Get(c.etcdURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd /health: %s", resp.Status)
		}
		return nil
	})
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) on the
// same address and port, and waits until /readyz is ok.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if c.apiserver != nil && !c.apiserver.exited() {
		return errors.New("kube-apiserver is already running")
	}
	p := c.pki.path
	var err error
	c.apiserver, err = startProc(c.opts.NetNS, "kube-apiserver", filepath.Join(c.Dir, "kube-apiserver.log"), filepath.Join(c.bins, KubeAPIServer),
		"--etcd-servers="+c.etcdURL,
		"--bind-address="+c.opts.Address.String(),
		"--advertise-address="+c.opts.Address.String(),
		"--secure-port="+strconv.Itoa(c.apiPort),
		"--tls-cert-file="+p("apiserver.crt"),
		"--tls-private-key-file="+p("apiserver.key"),
		"--client-ca-file="+p("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p("sa.pub"),
		"--service-account-signing-key-file="+p("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/12",
		"--endpoint-reconciler-type=none", // it refuses a loopback advertise address otherwise
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// Lab kubelets' hostnames (n1, ...) resolve nowhere: reach them
		// (logs, exec) by their InternalIP.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--cert-dir="+filepath.Join(c.Dir, "apiserver-certs"),
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	cs, err := c.Client()
	if err != nil {
		return err
	}
	return c.waitFor(ctx, c.apiserver, 90*time.Second, func() error {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		return err
	})
}

// StopAPIServer stops kube-apiserver only; etcd and the controller-manager
// keep running, as when an API server restarts in a real cluster.
func (c *Cluster) StopAPIServer() {
	c.apiserver.stop(apiServerGrace)
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	kc := filepath.Join(c.Dir, "controller-manager.kubeconfig")
	if err := c.writeKubeconfig(kc, c.URL, "admin"); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kc,
		"--controllers=nodeipam,serviceaccount,serviceaccount-token",
		"--service-account-private-key-file=" + c.pki.path("sa.key"),
		"--root-ca-file=" + c.pki.path("ca.crt"),
		"--service-cluster-ip-range=10.96.0.0/12",
		"--leader-elect=false",
		"--secure-port=0",
	}
	if !c.opts.NoNodeIPAM {
		args = append(args,
			"--allocate-node-cidrs",
			"--cluster-cidr="+c.opts.ClusterCIDR.String(),
			"--node-cidr-mask-size="+strconv.Itoa(c.opts.NodeCIDRMaskSize))
	}
	var err error
	c.kcm, err = startProc(c.opts.NetNS, "kube-controller-manager", filepath.Join(c.Dir, "kube-controller-manager.log"),
		filepath.Join(c.bins, KubeControllerManager), args...)
	if err != nil {
		return err
	}
	cs, err := c.Client()
	if err != nil {
		return err
	}
	// Pods are refused until the serviceaccount controller has made the
	// namespace's default ServiceAccount: wait for it.
	return c.waitFor(ctx, c.kcm, 60*time.Second, func() error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errors.New("no default ServiceAccount yet")
		}
		return err
	})
}

// waitFor polls ok until it succeeds, p exits, ctx ends or timeout passes.
func (c *Cluster) waitFor(ctx context.Context, p *proc, timeout time.Duration, ok func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ok()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, p.err, p.tail())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after %s: %v; its log ends:\n%s", p.name, timeout, err, p.tail())
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the controller-manager, then the API server, then etcd (the
// other order makes the API server linger), and removes Dir unless it was
// given in Options.
func (c *Cluster) Stop() {
	c.kcm.stop(10 * time.Second)
	c.apiserver.stop(apiServerGrace)
	c.etcd.stop(10 * time.Second)
	if c.opts.Dir == "" {
		os.RemoveAll(c.Dir)
	}
}

// CAFile is the cluster CA certificate, which signs the API server's.
func (c *Cluster) CAFile() string { return c.pki.path("ca.crt") }

// RESTConfig is an admin client configuration whose connections are made
// from inside the control plane's namespace.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   c.pki.path("ca.crt"),
			CertFile: c.pki.path("admin.crt"),
			KeyFile:  c.pki.path("admin.key"),
		},
		Dial:  DialContextIn(c.opts.NetNS),
		QPS:   100,
		Burst: 200,
	}
}

// TokenConfig is a client configuration that authenticates with a bearer
// token (a ServiceAccount's), dialling from the control plane's namespace.
func (c *Cluster) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.pki.path("ca.crt")},
		Dial:            DialContextIn(c.opts.NetNS),
	}
}

// Client is an admin clientset (see RESTConfig).
func (c *Cluster) Client() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(c.RESTConfig())
}

// writeKubeconfig writes a kubeconfig for server with the named client
// certificate from the PKI, trusting the cluster CA.
func (c *Cluster) writeKubeconfig(path, server, cert string) error {
	user := &clientcmdapi.AuthInfo{
		ClientCertificate: c.pki.path(cert + ".crt"),
		ClientKey:         c.pki.path(cert + ".key"),
	}
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"weft": {Server: server, CertificateAuthority: c.pki.path("ca.crt")}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"weft": user},
		Contexts:       map[string]*clientcmdapi.Context{"weft": {Cluster: "weft", AuthInfo: "weft"}},
		CurrentContext: "weft",
	}
	if err := clientcmd.WriteToFile(cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
