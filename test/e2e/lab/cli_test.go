package lab_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testkit/testnet"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testbin"
)

func weftCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(bin, args...)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := weftCmd(t, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("weft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The README's first command: `weft lab run` builds a lab, prints a full
// matrix and the throughput beside the underlay's, and removes the lab.
func TestLabRunCommand(t *testing.T) {
	name := config(t, "auto", 1, 2, 1).Name
	labtest.RemoveAtEnd(t, name)
	out := run(t, "lab", "run", "--name", name, "--nodes", "2", "--pods-per-node", "1")
	t.Logf("weft lab run:\n%s", out)
	for _, want := range []string{"2/2 pod pairs connected", "of underlay", "✓"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "✗") {
		t.Errorf("matrix has a failed pair")
	}
	labtest.AssertGone(t, name)
}

// up, status, exec and down are separate processes: the lab lives on
// between them, found through its state file.
func TestLabCommandsAcrossProcesses(t *testing.T) {
	name := config(t, "vxlan", 1, 2, 1).Name
	labtest.RemoveAtEnd(t, name)
	run(t, "lab", "up", "--name", name, "--nodes", "2", "--pods-per-node", "1", "--backend", "vxlan")
	status := run(t, "lab", "status", "--name", name)
	if strings.Count(status, " yes ") != 2 || !strings.Contains(status, "n2-p1") {
		t.Errorf("status does not show 2 ready agents and the pods:\n%s", status)
	}
	routes := run(t, "lab", "exec", "--name", name, "n1", "--", "ip", "route")
	if !strings.Contains(routes, "dev weft.vxlan proto 87 onlink") {
		t.Errorf("n1 has no VXLAN route:\n%s", routes)
	}
	addr := run(t, "lab", "exec", "--name", name, "n2-p1", "--", "ip", "-4", "-br", "addr", "show", "eth0")
	if !strings.Contains(addr, "10.244.") {
		t.Errorf("pod n2-p1 has no pod address:\n%s", addr)
	}
	if out, err := weftCmd(t, "lab", "up", "--name", name).CombinedOutput(); err == nil || !strings.Contains(string(out), "exists already") {
		t.Errorf("a second up of the same lab: %v\n%s", err, out)
	}
	run(t, "lab", "down", "--name", name)
	labtest.AssertGone(t, name)
}

// `weft lab down` cleans up after an up that was killed halfway, when
// agents run but no state file says everything the lab made.
func TestLabDownAfterCrashedUp(t *testing.T) {
	name := config(t, "auto", 1, 3, 2).Name
	labtest.RemoveAtEnd(t, name)
	up := weftCmd(t, "lab", "up", "--name", name, "--nodes", "3", "--pods-per-node", "2")
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 30*time.Second, "an agent of the lab runs", func() error {
		for _, pid := range labtest.Processes(name) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(b, []byte("agent")) {
				return nil
			}
		}
		return fmt.Errorf("no agent yet")
	})
	up.Process.Signal(syscall.SIGKILL)
	up.Wait()
	os.Remove(lab.Dir(name) + "/state.json")
	if len(labtest.Processes(name)) == 0 {
		t.Fatal("nothing of the lab runs after the crash: the test would prove nothing")
	}
	run(t, "lab", "down", "--name", name)
	labtest.AssertGone(t, name)
}
