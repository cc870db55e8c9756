package main

import (
	"os/exec"
	"strings"
	"testing"
)

// weft is the agent's binary, and the agent's memory goal (25 MB) rests on
// what it links: Go maps every linked package's code and runs its init, so
// a package that is linked costs memory whether or not it runs. The typed
// Kubernetes clientset (a Go type and scheme registration for every API
// group) cost the agent about 17 MB, the embedded etcd server of the lab
// about 14 MB; the agent uses the dynamic client, and the lab is weft-lab.
func TestAgentBinaryLinksNoHeavyPackages(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list weft's imports: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/weftnet/weft/cmd/weft").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	heavy := map[string]string{
		"k8s.io/client-go/kubernetes":          "the typed clientset: use k8s.io/client-go/dynamic",
		"k8s.io/client-go/informers":           "typed informers: use tools/cache with the dynamic client",
		"k8s.io/api/":                          "typed API objects: read unstructured objects",
		"go.etcd.io/etcd/server/":              "the etcd server: it belongs in weft-lab",
		"github.com/weftnet/weft/internal/lab": "the lab: it belongs in weft-lab",
	}
	for _, p := range strings.Fields(string(out)) {
		for prefix, why := range heavy {
			if strings.HasPrefix(p, prefix) {
				t.Errorf("weft links %s (%s)", p, why)
			}
		}
	}
}

// weft-portmap is containernetworking's portmap, built from its own
// package into its own binary: neither the agent nor weft-cni links any
// of its code or of the firewall libraries it drives (iptables and nft
// through their commands), so that shipping it changes neither of them.
func TestWeftAndPluginLinkNoPortmapCode(t *testing.T) {
	portmap := []string{
		"github.com/containernetworking/plugins/plugins/",
		"github.com/containernetworking/plugins/pkg/utils",
		"github.com/coreos/go-iptables/",
		"sigs.k8s.io/knftables",
		"github.com/mattn/go-shellwords",
	}
	for _, cmd := range []string{"github.com/weftnet/weft/cmd/weft", "github.com/weftnet/weft/cmd/weft-cni"} {
		out, err := exec.Command("go", "list", "-deps", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", cmd, err, out)
		}
		for _, p := range strings.Fields(string(out)) {
			for _, prefix := range portmap {
				if strings.HasPrefix(p, prefix) {
					t.Errorf("%s links %s, portmap's code: it belongs in weft-portmap alone", cmd, p)
				}
			}
		}
	}
}
