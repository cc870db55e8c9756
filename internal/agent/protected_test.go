package agent

import (
	"context"
	"net/netip"
	"slices"
	"testing"
)

func TestEndpointPrefixesAreTheDatastoresAddresses(t *testing.T) {
	got := EndpointPrefixes(context.Background(), "http://172.30.0.254:2379, https://[fd00::1]:6443,10.96.0.1:443,,127.0.0.1")
	want := []netip.Prefix{
		netip.MustParsePrefix("172.30.0.254/32"), netip.MustParsePrefix("fd00::1/128"),
		netip.MustParsePrefix("10.96.0.1/32"), netip.MustParsePrefix("127.0.0.1/32"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("EndpointPrefixes = %v, want %v", got, want)
	}
}
