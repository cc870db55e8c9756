package preflight

import (
	"net/netip"
	"testing"
)

func TestParseProcNetAddress(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:2A7A":                         "0.0.0.0:10874",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:18EB": "127.0.0.1:6379", // v4-mapped
	} {
		got, err := parseHexAddrPort(in)
		if err != nil || got != netip.MustParseAddrPort(want) {
			t.Errorf("parse %s = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "XYZ:0050", "0100007F:FFFFF"} {
		if _, err := parseHexAddrPort(bad); err == nil {
			t.Errorf("parse %q succeeded", bad)
		}
	}
}

func TestPortList(t *testing.T) {
	if got := portList([]uint16{22, 30000, 30001, 30002, 31000}); got != "22,30000-30002,31000" {
		t.Errorf("portList = %q", got)
	}
}
