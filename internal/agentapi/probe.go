package agentapi

import (
	"github.com/weftnet/weft/internal/probe"
)

// SetProbe copies a probe result into the peer's reachability fields.
func (p *Peer) SetProbe(r probe.Result) {
	p.State = string(r.State)
	p.Since = r.Since
	p.Down = r.Down
	p.RTTMillis = 0
	if r.State == probe.Reachable {
		p.RTTMillis = float64(r.RTT.Microseconds()) / 1000
	}
	p.LastError = r.LastError
}
