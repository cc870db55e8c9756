package lab_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab/bench"
	"github.com/weftnet/weft/internal/testkit/labtest"
)

// TestChaosSmall is a small `weft bench chaos`: 40 pod ADDs and DELs
// through the plugin with an agent killed by SIGKILL among them, then the
// datastore killed for twice a 5 s lease TTL, while the long-lived pods
// are probed. No address may be leased twice or leaked, no echo between
// long-lived pods lost, and the run must end with every node's doctor
// healthy and the matrix full. The benchmark removes its lab; RemoveAtEnd
// checks that nothing of it is left.
func TestChaosSmall(t *testing.T) {
	cfg := labtest.Config(t, "ch")
	labtest.RemoveAtEnd(t, cfg.Name)
	c := bench.DefaultChaos()
	c.Name, c.Churn, c.Kills, c.LeaseTTL = cfg.Name, 40, 1, 5*time.Second
	c.Phases = []string{bench.PhaseChurn, bench.PhaseCrash}
	var out strings.Builder
	o := bench.Options{WeftBin: cfg.WeftBin, CNIBin: cfg.CNIBin, Rounds: 1, Out: &out, Log: testWriter{t}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := bench.Chaos(ctx, o, c)
	if rep != nil {
		rep.Print(&out)
	}
	t.Logf("chaos report:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range rep.Broken() {
		t.Errorf("broken: %s", b)
	}
	var names []string
	for _, p := range rep.Phases {
		names = append(names, p.Name)
	}
	if got, want := strings.Join(names, ","), "churn,datastore-kill,end"; got != want {
		t.Errorf("phases run: %s, want %s", got, want)
	}
	if churn := rep.Phases[0]; churn.Sent == 0 {
		t.Errorf("no echo was sent between long-lived pods during the churn: the loss check proves nothing")
	}
}

// testWriter sends the benchmark's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
