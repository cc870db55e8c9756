package lab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/firewall"
	"github.com/weftnet/weft/internal/firewall/fwtest"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// A NetworkPolicy admits only pod a to pod b (UDP 7070). Pod c, on a's
// node, cannot reach b, and cannot either by posing as a inside a VXLAN
// frame sent to b's node: its node never lets that datagram out.
func TestLabPolicyNotBypassedThroughTheOverlay(t *testing.T) {
	cfg := fwConfig(t, cluster.BackendVXLAN, 2, 0)
	cfg.Datastore = "kubernetes"
	l := labtest.Up(t, cfg)
	cs, err := l.KubeClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "fwp"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods are refused until the controller-manager made the
	// namespace's default ServiceAccount.
	testnet.Eventually(t, 30*time.Second, "default ServiceAccount in "+ns, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	ips := map[string]netip.Addr{}
	for name, node := range map[string]string{"a": "n1", "c": "n1", "b": "n2"} {
		ips[name] = runPod(t, cs, ns, name, node)
	}
	n1, n2 := l.Nodes[0], l.Nodes[1]
	podNS := func(node, name string) string { return l.Name + "-" + node + "-" + ns + "." + name }
	target := netip.AddrPortFrom(ips["b"], 7070)
	rx := listenIn(t, podNS("n2", "b"), "udp4", target)
	udp := intstr.FromInt32(7070)
	proto := corev1.ProtocolUDP
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "only-a-to-b", Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &proto, Port: &udp}},
			}},
		},
	}
	if _, err := cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 30*time.Second, "the policy: a reaches b, c does not", func() error {
		if !deliveredWithin(1, rx, func(p []byte) { sendFrom(t, podNS("n1", "a"), target, p) }) {
			return fmt.Errorf("a does not reach b")
		}
		p := payload("c to b")
		sendFrom(t, podNS("n1", "c"), target, p)
		if arrived(rx, p) {
			return fmt.Errorf("c reaches b")
		}
		return nil
	})

	vtep, err := net.ParseMAC(vtepMAC(t, l, n2.Name))
	if err != nil {
		t.Fatal(err)
	}
	frame := func(p []byte) []byte { return fwtest.VXLAN(vtep, ips["a"], target, p) }
	// n1 itself sending the frame shows that it would pass n2's guard
	// and the policy: only c's own node can stop c's.
	if !deliveredWithin(5, rx, func(p []byte) { sendVXLANFrom(t, n1.Netns, n2.UnderlayIP, frame(p)) }) {
		t.Fatal("n1's own VXLAN frame from a did not reach b: the test cannot see the guard work")
	}
	p := payload("c as a")
	sendVXLANFrom(t, podNS("n1", "c"), n2.UnderlayIP, frame(p))
	if arrived(rx, p) {
		t.Errorf("pod c reached b posing as a inside a VXLAN frame: the policy was bypassed")
	}
	dropsMoved(t, n1, firewall.DropPodVXLAN, 1)
}

// runPod makes a Pod on node (labelled pod=name) and returns its address
// once the lab runs it.
func runPod(t *testing.T, cs kubernetes.Interface, ns, name, node string) netip.Addr {
	t.Helper()
	ctx := context.Background()
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"pod": name}},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "app", Image: "weft.dev/lab/netcheck:v1"}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip netip.Addr
	testnet.Eventually(t, 30*time.Second, "pod "+name+" running with an address", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("phase %s, podIP %q", p.Status.Phase, p.Status.PodIP)
		}
		ip, err = netip.ParseAddr(p.Status.PodIP)
		return err
	})
	return ip
}
