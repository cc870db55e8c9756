package main

import (
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

func init() {
	registerDatastore("kubernetes", func(fs *flag.FlagSet) func(storeConfig) (store.Store, string, error) {
		kubeconfig := fs.String("kubeconfig", "", "kubeconfig file for the Kubernetes datastore (default: $KUBECONFIG, else the pod's in-cluster service account)")
		allocate := fs.Bool("kube-allocate-subnets", false, "allocate pod subnets for Nodes that kube-controller-manager gives no podCIDR (clusters without --allocate-node-cidrs)")
		namespace := fs.String("kube-namespace", "kube-system", "namespace of the subnet claims made with --kube-allocate-subnets")
		return func(c storeConfig) (store.Store, string, error) {
			return openKube(c, *kubeconfig, *allocate, *namespace)
		}
	})
}

func openKube(c storeConfig, kubeconfig string, allocate bool, namespace string) (store.Store, string, error) {
	cfg, err := kubeRESTConfig(kubeconfig)
	if err != nil {
		return nil, "", err
	}
	cfg.UserAgent = "weft/" + version.Version
	// The dynamic client, not the typed clientset: see kubestore.
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	kubeClient = client // shared with the NetworkPolicy controller (policy.go)
	s, err := kubestore.Open(kubestore.Config{
		Client:          client,
		NodeName:        c.NodeName,
		AllocateSubnets: allocate,
		ClusterCIDR:     c.ClusterCIDR,
		SubnetLen:       c.SubnetLen,
		Namespace:       namespace,
		Logger:          c.Logger,
	})
	if err != nil {
		return nil, "", err
	}
	return s, cfg.Host, nil
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
