package metrics

import (
	"context"
	"time"

	"github.com/weftnet/weft/internal/cnievents"
)

// ConsumeCNIEvents turns the plugin's events into samples until ctx is
// done or events is closed (the listener closed).
func (m *Metrics) ConsumeCNIEvents(ctx context.Context, events <-chan cnievents.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			m.ObserveCNI(ev.Verb, ev.OK, time.Duration(ev.Seconds*float64(time.Second)))
		}
	}
}
