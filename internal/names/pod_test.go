package names

import (
	"net/netip"
	"strings"
	"testing"
)

func TestHostVethName(t *testing.T) {
	seen := map[string]bool{}
	for _, id := range []string{"a", "b", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} {
		for _, ifname := range []string{"eth0", "net1"} {
			n := HostVethName(id, ifname)
			if len(n) != 15 || !strings.HasPrefix(n, VethPrefix) {
				t.Errorf("HostVethName(%q, %q) = %q", id, ifname, n)
			}
			if n != HostVethName(id, ifname) {
				t.Errorf("HostVethName(%q, %q) is not stable", id, ifname)
			}
			if seen[n] {
				t.Errorf("HostVethName(%q, %q) = %q collides", id, ifname, n)
			}
			seen[n] = true
		}
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if HostVethName("ab", "c") == HostVethName("a", "bc") {
		t.Error("attachments differing only in where id ends share a name")
	}
}

func TestMACsAreLocalUnicast(t *testing.T) {
	for _, m := range [][]byte{PodMAC(netip.MustParseAddr("10.244.1.2")), HostMAC("c1", "eth0")} {
		if m[0]&1 != 0 || m[0]&2 == 0 {
			t.Errorf("%x is not a locally administered unicast MAC", m)
		}
	}
}

func TestPodAddrOfMACInvertsPodMAC(t *testing.T) {
	a := netip.MustParseAddr("10.244.3.77")
	if got := PodAddrOfMAC(PodMAC(a)); got != a {
		t.Fatalf("PodAddrOfMAC(PodMAC(%s)) = %s", a, got)
	}
	if got := PodAddrOfMAC(HostMAC("c", "eth0")); got.IsValid() {
		t.Fatalf("a host MAC read as pod address %s", got)
	}
}
