package cniplugin

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/internal/names"
)

func code(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// Subnets that would take over the node's routing or a reserved range,
// and data dirs that climb out of where they point, are refused with
// code 7 before anything is made.
func TestLoadRefusesDangerousConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, conf := range []string{
		`"subnet":"0.0.0.0/0"`, `"subnet":"128.0.0.0/1"`, `"subnet":"127.0.0.0/8"`,
		`"subnet":"169.254.0.0/16"`, `"subnet":"224.0.0.0/8"`, `"subnet":"10.244.0.0/31"`, `"subnet":"10.244.0.1/32"`,
		`"subnet":"10.244.1.0/24","dataDir":"` + dir + `/../../etc"`,
		`"subnet":"10.244.1.0/24","dataDir":"var/lib/weft"`,
		`"subnet":"10.244.1.0/24","dataDir":"/var/lib/weft/./x"`,
		`"subnet":"10.244.1.0/24","dataDir":"` + dir + `","eventsSocket":"/run/weft/../x.sock"`,
	} {
		_, err := load([]byte(`{"cniVersion":"1.0.0","name":"weft",`+conf+`}`), true)
		if code(err) != types.ErrInvalidNetworkConfig {
			t.Errorf("config with %s: %v, want code 7", conf, err)
		}
	}
}

func TestReadConfigIsBounded(t *testing.T) {
	b, err := ReadConfig(bytes.NewReader(make([]byte, MaxConfigBytes)))
	if err != nil || len(b) != MaxConfigBytes {
		t.Fatalf("a config of exactly the bound: %d bytes, %v", len(b), err)
	}
	// A reader that never ends: the bound is what stops it.
	_, err = ReadConfig(endless{})
	if code(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("an endless config: %v, want code 7 naming the bound", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestCheckArgs(t *testing.T) {
	good := skel.CmdArgs{ContainerID: "abc-1.2_3", IfName: "eth0", Netns: "/var/run/netns/cni-1"}
	if err := checkArgs("ADD", &good); err != nil {
		t.Fatalf("good args: %v", err)
	}
	del := good
	del.Netns = ""
	if err := checkArgs("DEL", &del); err != nil {
		t.Fatalf("DEL without a netns: %v", err)
	}
	if err := checkArgs("GC", &skel.CmdArgs{}); err != nil {
		t.Fatalf("GC without a container: %v", err)
	}
	for _, mod := range []func(*skel.CmdArgs){
		func(a *skel.CmdArgs) { a.ContainerID = "" },
		func(a *skel.CmdArgs) { a.ContainerID = "-x" },
		func(a *skel.CmdArgs) { a.ContainerID = "a/b" },
		func(a *skel.CmdArgs) { a.IfName = "a/b" },
		func(a *skel.CmdArgs) { a.IfName = "0123456789abcdef" },
		func(a *skel.CmdArgs) { a.Netns = "" },
		func(a *skel.CmdArgs) { a.Netns = "netns/x" },
		func(a *skel.CmdArgs) { a.Netns = "/proc/1/../self/ns/net" },
	} {
		a := good
		mod(&a)
		if err := checkArgs("ADD", &a); code(err) != types.ErrInvalidEnvironmentVariables {
			t.Errorf("ADD with %+v: %v, want code 4", a, err)
		}
	}
}

// FuzzArgs: whatever the runtime puts in the environment, checkArgs never
// panics, refuses only with code 4, and what it accepts names a host veth
// the kernel takes and a clean absolute netns path.
func FuzzArgs(f *testing.F) {
	f.Add("ADD", "0123456789abcdef", "eth0", "/var/run/netns/cni-1234")
	f.Add("DEL", "c1", "net1", "")
	f.Add("CHECK", "c.1_2-3", "eth0", "/proc/1234/ns/net")
	f.Add("ADD", "a b", "eth 0", "relative/ns")
	f.Add("ADD", "x", "..", "/a/../b")
	f.Add("GC", "", "", "")
	f.Fuzz(func(t *testing.T, verb, id, ifname, netns string) {
		args := &skel.CmdArgs{ContainerID: id, IfName: ifname, Netns: netns}
		err := checkArgs(verb, args)
		if err != nil {
			if code(err) != types.ErrInvalidEnvironmentVariables {
				t.Fatalf("refused with %v, want code 4", err)
			}
			return
		}
		if verb == "GC" || verb == "STATUS" {
			return
		}
		if n := names.HostVethName(id, ifname); len(n) != 15 || checkIfName(n) != nil || !strings.HasPrefix(n, names.VethPrefix) {
			t.Fatalf("accepted %q/%q makes host veth %q", id, ifname, n)
		}
		if checkIfName(ifname) != nil {
			t.Fatalf("accepted ifname %q", ifname)
		}
		if netns != "" && checkPath(netns) != nil {
			t.Fatalf("accepted netns %q", netns)
		}
	})
}

// FuzzCacheEntry: a runtime cache file, however broken, yields either
// nothing or one attachment with an IPv4 address and names the plugin
// accepts.
func FuzzCacheEntry(f *testing.F) {
	f.Add([]byte(`{"kind":"cniCacheV1","containerId":"c1","ifName":"eth0","networkName":"weft","result":{"cniVersion":"1.0.0","ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":2}]}}`))
	f.Add([]byte(`{"containerId":"c1","ifName":"eth0","networkName":"weft","result":{"ips":[{"address":"fd00::5/64"},{"address":"10.244.1.6/24"}]}}`))
	f.Add([]byte(`{"containerId":"c1","ifName":"eth0","networkName":"other","result":{"ips":[{"address":"10.244.1.5/24"}]}}`))
	f.Add([]byte(`{"containerId":"","ifName":"eth0/x","networkName":"weft"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, ok := parseCacheEntry(b, "weft")
		if !ok {
			return
		}
		if !l.Addr.Is4() || l.ContainerID == "" || checkIfName(l.IfName) != nil || l.Veth != "" {
			t.Fatalf("accepted %+v from %q", l, b)
		}
	})
}

func TestCachedLeases(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("weft-c1-eth0", `{"kind":"cniCacheV1","containerId":"c1","ifName":"eth0","networkName":"weft","result":{"ips":[{"address":"10.244.1.5/24"}]}}`)
	write("weft-c2-eth0", `{"containerId":"c2","ifName":"eth0","networkName":"weft","result":{}}`)
	write("other-c3-eth0", `{"containerId":"c3","ifName":"eth0","networkName":"other","result":{"ips":[{"address":"10.9.1.5/24"}]}}`)
	write("weft-c4-eth0", `{"containerId":`)
	got := cachedLeases(dir, "weft")
	if len(got) != 1 || got[0].ContainerID != "c1" || got[0].Addr != netip.MustParseAddr("10.244.1.5") {
		t.Fatalf("cached leases %+v, want c1 at 10.244.1.5", got)
	}
	if got := cachedLeases(filepath.Join(dir, "none"), "weft"); got != nil {
		t.Fatalf("a missing cache dir gave %v", got)
	}
}
