package cniplugin

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/weftnet/weft/internal/ipam"
	"github.com/weftnet/weft/internal/names"
	"github.com/weftnet/weft/internal/nodestate"
)

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := load([]byte(`{"cniVersion":"1.1.0","name":"weft","type":"weft-cni","subnet":"10.244.1.0/24","dataDir":"`+dir+`"}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != names.Bridge || c.MTU != 1500 || c.Gateway != netip.MustParseAddr("10.244.1.1") || c.IPAMDir != dir+"/ipam/weft" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestLoadTakesWhatIsMissingFromNodeState(t *testing.T) {
	dir := t.TempDir()
	nodestate.Write(dir, nodestate.State{Subnet: netip.MustParsePrefix("10.244.7.0/24"), MTU: 1450, Bridge: "weftx"})
	c, err := load([]byte(`{"cniVersion":"1.1.0","name":"weft","type":"weft-cni","dataDir":"`+dir+`"}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subnet.String() != "10.244.7.0/24" || c.MTU != 1450 || c.Bridge != "weftx" {
		t.Fatalf("from node state: %+v", c)
	}
	// The config wins over the node state.
	c, err = load([]byte(`{"cniVersion":"1.1.0","name":"weft","subnet":"10.244.8.0/24","mtu":9000,"bridge":"br9","dataDir":"`+dir+`"}`), true)
	if err != nil || c.Subnet.String() != "10.244.8.0/24" || c.MTU != 9000 || c.Bridge != "br9" {
		t.Fatalf("config over node state: %+v %v", c, err)
	}
}

func TestLoadWithoutSubnetForDEL(t *testing.T) {
	c, err := load([]byte(`{"cniVersion":"1.1.0","name":"weft","dataDir":"`+t.TempDir()+`"}`), false)
	if err != nil || c.Subnet.IsValid() || c.Bridge != names.Bridge {
		t.Fatalf("DEL before the agent ran: %+v %v", c, err)
	}
}

// FuzzLoad feeds arbitrary network configs to the parser: it never
// panics, every error is a CNI error with a spec code, and every accepted
// config is one the plugin can act on.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"weft","type":"weft-cni","bridge":"weft0","subnet":"10.244.1.0/24","mtu":1500,"dataDir":"/var/lib/weft","eventsSocket":"/run/weft/cni-events.sock"}`,
		`{"cniVersion":"0.3.1","name":"weft","subnet":"10.0.0.0/30"}`,
		`{"cniVersion":"1.0.0","name":"weft","subnet":"10.244.1.7/24","mtu":-1}`,
		`{"cniVersion":"1.1.0","name":"weft","subnet":"fd00::/64","bridge":"a/b"}`,
		`{"cniVersion":"1.1.0","name":"weft","prevResult":{"cniVersion":"1.1.0","ips":[]},"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
		`{"cniVersion":"1.0.0","name":"weft","subnet":"0.0.0.0/0"}`,
		`{"cniVersion":"1.0.0","name":"weft","subnet":"127.0.0.0/8","dataDir":"/var/lib/weft/../../etc"}`,
		`{"cniVersion":"1.0.0","name":"weft","subnet":"10.1.0.0/16","eventsSocket":"/run/./weft/s"}`,
		`{"name":`, `[]`, `null`, `{"cniVersion":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := load(b, true)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("error without a CNI code: %v", err)
			}
			switch e.Code {
			case types.ErrIncompatibleCNIVersion, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig, types.ErrTryAgainLater:
			default:
				t.Fatalf("unexpected code %d: %v", e.Code, e)
			}
			return
		}
		if err := ipam.CheckSubnet(c.Subnet); err != nil {
			t.Fatalf("accepted a subnet it cannot use: %v", err)
		}
		if c.Gateway != c.Subnet.Addr().Next() {
			t.Fatalf("gateway %s for %s", c.Gateway, c.Subnet)
		}
		if c.MTU < minMTU || c.MTU > maxMTU {
			t.Fatalf("accepted mtu %d", c.MTU)
		}
		if checkIfName(c.Bridge) != nil || c.Name == "" || c.DataDir == "" || checkPath(c.DataDir) != nil || strings.Contains(c.DataDir, "..") {
			t.Fatalf("accepted %+v", c)
		}
	})
}

// A node state the agent wrote wrong fails ADD clearly, never DEL.
func TestBrokenNodeState(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":   `{"subnet":`,
		"bad mtu":    `{"subnet":"10.244.9.0/24","mtu":20}`,
		"bad subnet": `{"subnet":"10.244.9.0/31"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(nodestate.Path(dir), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			conf := []byte(`{"cniVersion":"1.1.0","name":"weft","dataDir":"` + dir + `"}`)
			_, err := load(conf, true)
			var e *types.Error
			if !errors.As(err, &e) || (e.Code != types.ErrTryAgainLater && e.Code != types.ErrInvalidNetworkConfig) {
				t.Fatalf("ADD's load with a broken node state: %v", err)
			}
			if _, err := load(conf, false); err != nil {
				t.Fatalf("DEL's load with a broken node state: %v", err)
			}
		})
	}
}
