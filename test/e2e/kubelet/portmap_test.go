package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/testkit/testbin"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// distroPortmap is the portmap of the OS's CNI plugins package (Debian's
// 1.1.1, which speaks CNI up to 1.0.0).
const distroPortmap = "/usr/lib/cni/portmap"

// seedNodePortmaps gives every node the OS's portmap in /opt/cni/bin
// before Weft is installed, as a node with the distribution's CNI
// plugins has it, and returns its content.
func seedNodePortmaps(t *testing.T, l *lab.Lab) []byte {
	t.Helper()
	b, err := os.ReadFile(distroPortmap)
	if err != nil {
		t.Fatalf("the OS's portmap (hack/install-deps.sh installs it): %v", err)
	}
	for _, n := range l.Nodes {
		dir := n.KubeletHostPath("/opt/cni/bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "portmap"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// chainOffers110 checks what the init container left on every node that
// had the OS's older portmap: weft-portmap, as the image carries it,
// beside the node's portmap, which is untouched; a conflist chaining
// weft-cni and weft-portmap from which libcni picks CNI 1.1.0; and
// containerd sending STATUS through that chain (a runtime sends it only
// at 1.1.0), which weft-cni reports to the agent.
func chainOffers110(t *testing.T, l *lab.Lab, nodePortmap []byte) {
	t.Helper()
	src, err := testbin.Path(names.PortmapType)
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		bin := n.KubeletHostPath("/opt/cni/bin")
		if b, err := os.ReadFile(filepath.Join(bin, names.PortmapType)); err != nil || string(b) != string(shipped) {
			t.Errorf("%s: %s is not the image's (%v)", n.Name, names.PortmapType, err)
		}
		if b, err := os.ReadFile(filepath.Join(bin, "portmap")); err != nil || string(b) != string(nodePortmap) {
			t.Errorf("%s: the node's own portmap was changed (%v)", n.Name, err)
		}
		path := filepath.Join(n.KubeletHostPath("/etc/cni/net.d"), names.ConfListName)
		list, err := libcni.ConfListFromFile(path)
		if err != nil {
			t.Errorf("%s: %v", n.Name, err)
			continue
		}
		var chain []string
		for _, p := range list.Plugins {
			chain = append(chain, p.Network.Type)
		}
		if list.CNIVersion != "1.1.0" || strings.Join(chain, ",") != names.PluginType+","+names.PortmapType {
			t.Errorf("%s: libcni picks CNI %s for the chain %v from %s, want 1.1.0 for weft-cni, weft-portmap", n.Name, list.CNIVersion, chain, list.Bytes)
		}
	}
	testnet.Eventually(t, 2*time.Minute, "containerd sends STATUS through the chain on every node", func() error {
		for _, n := range l.Nodes {
			if k := cniRequests(agentMetrics(t, n.Netns), "STATUS"); k == 0 {
				return fmt.Errorf("no successful STATUS on %s yet", n.Name)
			}
		}
		return nil
	})
}

var cniRequestsLine = regexp.MustCompile(`(?m)^weft_cni_requests_total\{([^}]*)\} (\d+)`)

// cniRequests is how many runs of verb succeeded, by the agent's metrics.
func cniRequests(metrics, verb string) int {
	for _, m := range cniRequestsLine.FindAllStringSubmatch(metrics, -1) {
		if strings.Contains(m[1], `verb="`+verb+`"`) && strings.Contains(m[1], `result="success"`) {
			k, _ := strconv.Atoi(m[2])
			return k
		}
	}
	return 0
}
