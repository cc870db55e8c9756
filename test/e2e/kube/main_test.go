// Package kube tests Weft's Kubernetes side against a real control plane
// (etcd, kube-apiserver, kube-controller-manager built from Go modules and
// run on loopback by internal/lab/controlplane): the Kubernetes datastore, the
// manifest in deploy/ and its RBAC.
package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/internal/lab/controlplane"
)

// controlPlane is the control plane shared by the tests that do not need one of
// their own: starting one takes a few seconds.
var controlPlane *controlplane.Cluster

// needsRoot is why every test here skips for a normal user: they run the
// lab's namespaces or the control plane that root built into
// /var/cache/weft, and TestMain starts the shared one only as root.
const needsRoot = "runs the Kubernetes control plane and lab namespaces"

func TestMain(m *testing.M) {
	flag.Parse() // for testing.Short
	if os.Geteuid() != 0 || testing.Short() {
		os.Exit(m.Run()) // every test skips (testnet.RequireRoot)
	}
	c, err := controlplane.Start(context.Background(), controlplane.Options{Prefix: "wtk-kube"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	controlPlane = c
	code := m.Run()
	c.Stop()
	os.Exit(code)
}

func admin(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := controlPlane.Client()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// dynClient is the kind of client the Kubernetes datastore takes (the
// agent links no typed clientset), for cfg.
func dynClient(t *testing.T, cfg *rest.Config) dynamic.Interface {
	t.Helper()
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// uniq is a name no other run uses: the test prefix and a random suffix.
func uniq(what string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "wtk-" + what + "-" + hex.EncodeToString(b)
}

// createNode registers a Node, as kubelet does, and deletes it when the
// test ends.
func createNode(t *testing.T, cs kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	t.Cleanup(func() {
		cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return n
}
