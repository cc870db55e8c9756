package bridge

import "testing"

func TestPodVethNameIsThePluginsNaming(t *testing.T) {
	for n, want := range map[string]bool{
		"weft3f2a9c01b7e": true, // what the plugin makes: prefix and hex
		"weftc0ffee01":    true,
		"weft0":           true, // hex too; RemovePorts skips the bridge's own name
		"weft.vxlan":      false,
		"weft":            false,
		"weftX1":          false,
		"eth0":            false,
		"veth1234":        false,
	} {
		if got := podVethName(n, "weft"); got != want {
			t.Errorf("podVethName(%q) = %v, want %v", n, got, want)
		}
	}
}
