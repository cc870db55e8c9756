package nflog

import (
	"net/netip"
	"testing"
)

// The flow of a logged packet: addresses always, ports only where the
// transport header is there (not a later fragment, not a short copy).
func TestIPv4Flow(t *testing.T) {
	hdr := func(ihl int, proto byte, frag uint16, l4 ...byte) []byte {
		b := make([]byte, ihl*4)
		b[0] = 0x40 | byte(ihl)
		b[6], b[7] = byte(frag>>8), byte(frag)
		b[9] = proto
		copy(b[12:], []byte{10, 244, 1, 2})
		copy(b[16:], []byte{10, 244, 2, 3})
		return append(b, l4...)
	}
	src, dst := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.2.3")
	for _, tc := range []struct {
		name    string
		payload []byte
		ok      bool
		want    Flow
	}{
		{"tcp", hdr(5, 6, 0, 0x9c, 0x40, 0, 80), true, Flow{src, dst, 6, 40000, 80}},
		{"udp with options", hdr(6, 17, 0, 0, 53, 0x13, 0x88), true, Flow{src, dst, 17, 53, 5000}},
		{"later fragment", hdr(5, 17, 10, 1, 2, 3, 4), true, Flow{src, dst, 17, 0, 0}},
		{"icmp", hdr(5, 1, 0, 8, 0, 0, 0), true, Flow{src, dst, 1, 0, 0}},
		{"ports cut off", hdr(5, 6, 0, 1), true, Flow{src, dst, 6, 0, 0}},
		{"short", []byte{0x45, 0}, false, Flow{}},
		{"ipv6", append([]byte{0x60}, make([]byte, 39)...), false, Flow{}},
		{"ihl beyond copy", hdr(5, 6, 0)[:20:20], true, Flow{src, dst, 6, 0, 0}},
	} {
		got, ok := Packet{Payload: tc.payload}.IPv4()
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	bad := hdr(5, 6, 0)
	bad[0] = 0x4f // IHL 60 bytes, 20 copied
	if _, ok := (Packet{Payload: bad}).IPv4(); ok {
		t.Error("a header longer than the copy was read")
	}
}
