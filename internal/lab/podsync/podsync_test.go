package podsync

import (
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Every TCP or UDP port a pod declares is served once, SCTP is not, and
// a port without a protocol is TCP's, as the API defaults it.
func TestServedPorts(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Ports: []corev1.ContainerPort{{ContainerPort: 9000}}}},
		Containers: []corev1.Container{
			{Ports: []corev1.ContainerPort{
				{Name: "serve-80-tcp", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
				{Name: "serve-80-udp", ContainerPort: 80, Protocol: corev1.ProtocolUDP},
				{Name: "serve-82-sctp", ContainerPort: 82, Protocol: corev1.ProtocolSCTP},
			}},
			{Ports: []corev1.ContainerPort{{ContainerPort: 81, Protocol: corev1.ProtocolUDP}}},
		},
	}}
	if got, want := servedPorts(p), []int{80, 81, 9000}; !slices.Equal(got, want) {
		t.Fatalf("served ports %v, want %v", got, want)
	}
}

// A pod's namespace carries the lab's prefix and cannot be taken for one
// of the lab's own pods ("<lab>-<node>-pN"); a name too long for a file
// falls back to the pod's UID.
func TestPodNetnsName(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p1", UID: "1234-abcd"}}
	if got := podNetns("lab", "n1", p); got != "lab-n1-x.p1" {
		t.Fatalf("namespace %q", got)
	}
	p.Name = strings.Repeat("a", 253)
	got := podNetns("lab", "n1", p)
	if got != "lab-n1-x.1234-abcd" {
		t.Fatalf("namespace of a pod with a 253-character name: %q", got)
	}
}

// unboundPorts reads this process's own sockets: a port is bound once
// both a TCP listener and a UDP socket hold it.
func TestUnboundPorts(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		t.Skip("no /proc/self/net")
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	port := tl.Addr().(*net.TCPAddr).Port
	p := strconv.Itoa(port)
	if got := unboundPorts(os.Getpid(), []int{port}); !slices.Equal(got, []string{p + "/udp"}) {
		t.Fatalf("TCP listener only: missing %v, want [%s/udp]", got, p)
	}
	uc, err := net.ListenPacket("udp", "127.0.0.1:"+p)
	if err != nil {
		t.Skipf("UDP port %s is taken: %v", p, err)
	}
	defer uc.Close()
	if got := unboundPorts(os.Getpid(), []int{port}); len(got) != 0 {
		t.Fatalf("TCP and UDP bound: missing %v", got)
	}
	tl.Close()
	if got := unboundPorts(os.Getpid(), []int{port}); !slices.Equal(got, []string{p + "/tcp"}) {
		t.Fatalf("UDP only: missing %v, want [%s/tcp]", got, p)
	}
}
