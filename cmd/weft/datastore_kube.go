package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/internal/store"
	"github.com/weftnet/weft/internal/store/kubestore"
	"github.com/weftnet/weft/internal/version"
)

var kubeFlags struct {
	kubeconfig      string
	allocateSubnets bool
	namespace       string
}

func init() {
	registerDatastore("kubernetes", func(fs *flag.FlagSet) {
		fs.StringVar(&kubeFlags.kubeconfig, "kubeconfig", "", "kubeconfig file for the Kubernetes datastore (default: $KUBECONFIG, else the pod's in-cluster service account)")
		fs.BoolVar(&kubeFlags.allocateSubnets, "kube-allocate-subnets", false, "allocate pod subnets for Nodes that kube-controller-manager gives no podCIDR (clusters without --allocate-node-cidrs)")
		fs.StringVar(&kubeFlags.namespace, "kube-namespace", "kube-system", "namespace of the subnet claims made with --kube-allocate-subnets")
	}, openKube)
}

func openKube(ctx context.Context) (store.Store, string, error) {
	cfg, err := kubeRESTConfig(kubeFlags.kubeconfig)
	if err != nil {
		return nil, "", err
	}
	cfg.UserAgent = "weft/" + version.Version
	// The dynamic client, not the typed clientset: see kubestore.
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	s, err := kubestore.New(kubestore.Config{
		Client:          client,
		NodeName:        kubeNodeName(),
		AllocateSubnets: kubeFlags.allocateSubnets,
		ClusterCIDR:     agentOpts.clusterCIDR,
		SubnetLen:       agentOpts.subnetLen,
		Namespace:       kubeFlags.namespace,
		Logger:          agentOpts.logger,
	})
	return s, cfg.Host, err
}

// kubeRESTConfig reads the kubeconfig, or the in-cluster service account
// when there is none (the DaemonSet's case).
func kubeRESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not in a pod: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// kubeNodeName is the agent's Node: --node-name when given, else NODE_NAME
// (what the DaemonSet sets from spec.nodeName), else the host name, which
// is kubelet's default Node name.
func kubeNodeName() string {
	host, _ := os.Hostname()
	if env := os.Getenv("NODE_NAME"); env != "" && agentOpts.nodeName == host {
		return env
	}
	return agentOpts.nodeName
}
