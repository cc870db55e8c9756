package metrics

import (
	"context"
	"time"

	"github.com/weftnet/weft/internal/cnievents"
)

// ConsumeCNIEvents turns the plugin's events into samples, and hands
// each on to then (if not nil), until ctx is done or events is closed
// (the listener closed).
func (m *Metrics) ConsumeCNIEvents(ctx context.Context, events <-chan cnievents.Event, then func(cnievents.Event)) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			m.ObserveCNI(ev.Verb, ev.OK, time.Duration(ev.Seconds*float64(time.Second)))
			if then != nil {
				then(ev)
			}
		}
	}
}
