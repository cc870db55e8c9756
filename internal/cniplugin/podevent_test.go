package cniplugin

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/weftnet/weft/internal/cnievents"
)

// What the runtime passes in CNI_ARGS, and the address an ADD gave,
// become the event's pod; nothing else does.
func TestPodOf(t *testing.T) {
	k8s := "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u-1"
	add := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", Args: k8s}
	noteAddress(add, netip.MustParseAddr("10.244.1.7"))
	got := podOf("ADD", add, true)
	want := cnievents.Pod{Namespace: "x", Name: "a", UID: "u-1", ContainerID: "c1", IP: "10.244.1.7"}
	if got == nil || *got != want {
		t.Fatalf("ADD: got %+v, want %+v", got, want)
	}
	// A failed ADD names the pod but no address.
	failed := &skel.CmdArgs{ContainerID: "c2", Args: k8s}
	noteAddress(failed, netip.MustParseAddr("10.244.1.8"))
	if got := podOf("ADD", failed, false); got == nil || got.IP != "" {
		t.Fatalf("failed ADD: got %+v, want the pod without an address", got)
	}
	if got := podOf("DEL", &skel.CmdArgs{ContainerID: "c1", Args: k8s}, true); got == nil || got.IP != "" || got.ContainerID != "c1" {
		t.Fatalf("DEL: got %+v", got)
	}
	for _, args := range []string{
		"",                    // not Kubernetes (podman, cnitool)
		"K8S_POD_NAMESPACE=x", // no name
		"K8S_POD_NAME=a",      // no namespace
		"K8S_POD_NAMESPACE=" + strings.Repeat("n", 64) + ";K8S_POD_NAME=a", // longer than a namespace can be
	} {
		if got := podOf("ADD", &skel.CmdArgs{ContainerID: "c3", Args: args}, true); got != nil {
			t.Errorf("CNI_ARGS %q: got %+v, want no pod", args, got)
		}
	}
	if got := podOf("CHECK", &skel.CmdArgs{ContainerID: "c1", Args: k8s}, true); got != nil {
		t.Errorf("CHECK: got %+v, want no pod", got)
	}
	// Every verb takes its address out: nothing stays behind.
	n := 0
	given.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d addresses left in given", n)
	}
}
