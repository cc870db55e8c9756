package freeport

import (
	"net"
	"strconv"
	"testing"
)

// A picked port is free, and below the ephemeral range, which outgoing
// connections take their ports from.
func TestPickIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	for range 20 {
		port, err := Pick("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if lo-lowest >= 1000 && (port < lowest || port >= lo) {
			t.Errorf("port %d outside [%d, %d)", port, lowest, lo)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("picked port %d is not free: %v", port, err)
		}
		l.Close()
	}
}
