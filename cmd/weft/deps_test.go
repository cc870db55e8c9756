package main

import (
	"os/exec"
	"path"
	"strings"
	"testing"
)

const module = "github.com/weftnet/weft/"

// shipped are the binaries a node runs, the agent (with the operator's
// tools) and the CNI plugin, each with the walls of its own beside the
// common ones.
var shipped = map[string]map[string]string{
	module + "cmd/weft": {
		module + "internal/cniplugin": "the plugin's verbs: the agent and its tools share the plugin's on-node names through internal/names",
	},
	module + "cmd/weft-cni": {},
}

// walls are the package trees a shipped binary must not link, and why.
// The agent's memory goal (25 MB) rests on what it links: Go maps every
// linked package's code and runs its init, so a package that is linked
// costs memory whether or not it runs. The typed Kubernetes clientset (a
// Go type and scheme registration for every API group) cost the agent
// about 17 MB, the embedded etcd server of the lab about 14 MB; the agent
// uses the dynamic client, and the lab is weft-lab. What tests and the lab
// are made of (a control plane, benchmarks, namespaces test beds) is not
// the product's either.
var walls = map[string]string{
	"k8s.io/client-go/kubernetes": "the typed clientset: use k8s.io/client-go/dynamic",
	"k8s.io/client-go/informers":  "typed informers: use tools/cache with the dynamic client",
	"k8s.io/api":                  "typed API objects: read unstructured objects",
	"go.etcd.io/etcd/server":      "the etcd server: it belongs in weft-lab",
	"testing":                     "package testing: tests only",
	module + "internal/lab":       "the lab, its programs and benchmarks: they belong in weft-lab",
	module + "internal/testkit":   "the test kit: tests only",
}

// TestShippedBinariesLinkNothingOfTheLabOrTests lists what each shipped
// binary links and fails on any package inside a wall, and on any of
// Weft's test helper packages (named *test, as Go's httptest is).
func TestShippedBinariesLinkNothingOfTheLabOrTests(t *testing.T) {
	for bin, own := range shipped {
		for _, p := range deps(t, bin) {
			if why, ok := walled(p, walls, own); ok {
				t.Errorf("%s links %s (%s)", path.Base(bin), p, why)
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

// The walls hold whole subtrees, and only those: a check that matched a
// bare prefix would take internal/labels for the lab, and one that
// matched exact paths would let internal/lab/bench through.
func TestWallsHoldWholeSubtrees(t *testing.T) {
	for p, want := range map[string]bool{
		module + "internal/lab":                           true,
		module + "internal/lab/bench/cnibench":            true,
		module + "internal/testkit/testnet":               true,
		module + "internal/netpol/netpoltest":             true,
		module + "internal/store/etcdstore/etcdtest":      true,
		"k8s.io/api/core/v1":                              true,
		"testing":                                         true,
		"testing/fstest":                                  true,
		module + "internal/labels":                        false,
		module + "internal/netpol":                        false,
		module + "internal/store/etcdstore":               false,
		"k8s.io/apimachinery/pkg/apis/meta/v1":            false,
		"k8s.io/client-go/tools/clientcmd/api/latest":     false,
		"github.com/mdlayher/netlink/nltest":              false,
		"k8s.io/client-go/kubernetes-not-the-clientset/x": false,
	} {
		if _, got := walled(p, walls); got != want {
			t.Errorf("walled(%s) = %v, want %v", p, got, want)
		}
	}
}

// walled says whether p lies inside one of the walls, and why.
func walled(p string, walls ...map[string]string) (string, bool) {
	for _, w := range walls {
		for root, why := range w {
			if p == root || strings.HasPrefix(p, root+"/") {
				return why, true
			}
		}
	}
	if strings.HasPrefix(p, module) && strings.HasSuffix(p, "test") {
		return "a test helper package: tests only", true
	}
	return "", false
}

// deps lists every package bin links.
func deps(t *testing.T, bin string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list %s's imports: %v", bin, err)
	}
	out, err := exec.Command(goBin, "list", "-deps", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", bin, err, out)
	}
	return strings.Fields(string(out))
}
