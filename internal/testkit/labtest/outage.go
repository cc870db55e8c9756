package labtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/testkit/testnet"
)

// DatastoreOutage stops the lab's datastore for as long as two pod-to-pod
// streams across nodes run (100 echoes 300 ms apart, n1 → n3 and n2 → n1)
// and checks that not one echo is lost, that every agent keeps running
// and that no node's kernel state changes: the datapath does not depend
// on the datastore. It then starts the datastore again and waits until
// every agent is ready, and returns when the datastore was back. The
// datastore is started again however the test ends.
func DatastoreOutage(t testing.TB, l *lab.Lab) (back time.Time) {
	t.Helper()
	before := map[string]lab.KernelState{}
	for _, n := range l.Nodes {
		before[n.Name] = Kernel(t, l, n.Name)
	}
	if err := l.StopDatastore(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			l.StartDatastore(context.Background())
		}
	}()
	var streams []*lab.PingRun
	for _, pair := range [][2]string{{"n1", "n3"}, {"n2", "n1"}} {
		s, err := lab.StartPing(context.Background(), PodOn(t, l, pair[0]).Netns, PodOn(t, l, pair[1]).IP, 100, 300*time.Millisecond, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	for _, s := range streams {
		r, err := s.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if r.Lost() != 0 {
			t.Errorf("pod traffic during the datastore outage: %d of %d echoes lost", r.Lost(), r.Sent)
		}
	}
	for _, n := range l.Nodes {
		if ok, err := l.AgentAlive(n.Name); !ok {
			t.Errorf("agent of %s did not survive the datastore outage: %v", n.Name, err)
		}
		if d := before[n.Name].Diff(Kernel(t, l, n.Name)); d != "" {
			t.Errorf("node %s's kernel state changed during the datastore outage (- before, + after):\n%s", n.Name, d)
		}
	}
	start := time.Now()
	if err := l.StartDatastore(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	back = time.Now()
	t.Logf("datastore back in %s", back.Sub(start).Round(time.Millisecond))
	for _, n := range l.Nodes {
		testnet.Eventually(t, 30*time.Second, "agent of "+n.Name+" ready after the datastore returned", func() error {
			ok, err := l.AgentReady(context.Background(), n.Name)
			if err == nil && !ok {
				err = fmt.Errorf("/readyz is not 200")
			}
			return err
		})
	}
	return back
}
