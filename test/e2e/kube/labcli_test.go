package kube

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/testkit/testnet"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/testkit/labtest"
	"github.com/weftnet/weft/internal/testkit/testbin"
)

// `weft lab up --datastore kubernetes` and `weft lab down`, as a user runs
// them: up starts the control plane itself and returns once every pod
// reaches every other; down stops it and removes everything.
func TestKubeLabCommand(t *testing.T) {
	testnet.RequireRoot(t, needsRoot)
	weft, err := testbin.Path("weft")
	if err != nil {
		t.Fatal(err)
	}
	name := labtest.Config(t, "wtk").Name
	labtest.RemoveAtEnd(t, name)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(weft, append([]string{"lab"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("weft lab %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("up", "--name", name, "--datastore", "kubernetes", "--nodes", "2", "--pods-per-node", "1")
	for _, want := range []string{"datastore kubernetes at https://", "every pod reaches every other"} {
		if !strings.Contains(out, want) {
			t.Fatalf("lab up output lacks %q:\n%s", want, out)
		}
	}
	l, err := lab.Open(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := l.Datastore.PID
	if l.Datastore.Kind != "kubernetes" || pid == 0 {
		t.Fatalf("datastore %+v", l.Datastore)
	}
	if !running(pid) {
		t.Fatalf("the control plane's supervisor (pid %d) is not running after up returned", pid)
	}
	run("down", "--name", name)
	if running(pid) {
		t.Fatalf("the control plane's supervisor (pid %d) still runs after down", pid)
	}
	if _, err := os.Stat(lab.Dir(name)); !os.IsNotExist(err) {
		t.Fatal("lab directory left after down")
	}
}

// running reports whether pid is a live process: a zombie waiting for a
// parent that already left (the `weft lab up` that started it) is not.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}
