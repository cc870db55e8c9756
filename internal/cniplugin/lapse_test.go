package cniplugin

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/internal/nodestate"
)

// A node whose agent has been down longer than its subnet lease may no
// longer hold the subnet (etcd mode): ADD hands out no address of it
// and says to try again later, while DEL still works. A lease that has
// not lapsed, or none at all (Kubernetes' podCIDR), changes nothing.
func TestNoAddressFromALapsedLease(t *testing.T) {
	conf := func(dir string) []byte {
		return []byte(`{"cniVersion":"1.1.0","name":"weft","type":"weft-cni","dataDir":"` + dir + `"}`)
	}
	sub := netip.MustParsePrefix("10.244.7.0/24")
	for _, c := range []struct {
		name    string
		expires time.Time
		refused bool
	}{
		{"no lease expiry", time.Time{}, false},
		{"lease held", time.Now().Add(time.Hour), false},
		{"lease lapsed", time.Now().Add(-time.Second), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := nodestate.Write(dir, nodestate.State{Subnet: sub, MTU: 1450, Bridge: "weft0", LeaseExpires: c.expires}); err != nil {
				t.Fatal(err)
			}
			_, err := load(conf(dir), true)
			var e *types.Error
			switch {
			case c.refused && (!errors.As(err, &e) || e.Code != types.ErrTryAgainLater):
				t.Fatalf("ADD with a lapsed lease: %v, want code %d", err, types.ErrTryAgainLater)
			case !c.refused && err != nil:
				t.Fatalf("ADD: %v", err)
			}
			if _, err := load(conf(dir), false); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
}
