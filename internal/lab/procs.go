package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/netns"
)

// proc is a process the lab started inside one of its namespaces. The lab
// outlives the command that ran `weft lab up`, so its processes run in a
// session of their own; a process started by this process is also reaped
// here, so that a killed one does not linger as a zombie that still looks
// alive.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startIn starts argv inside the named namespace, its output appended to
// logPath.
func startIn(nsName, logPath string, argv []string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := netns.Start(netns.Path(nsName), cmd); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(argv[0]), nsName, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	// A killed process's main thread turns zombie while its other threads
	// may still be exiting and holding its sockets (a restarted agent then
	// finds its ports taken): it is gone only when every thread is.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, t := range tasks {
		if running(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name())) {
			return true
		}
	}
	return false
}

// running reports whether the task whose stat file is path has not exited.
func running(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may hold
	// spaces: take what follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// signalWait sends sig to pid and waits up to timeout for it to go,
// then kills it.
func signalWait(pid int, sig syscall.Signal, timeout time.Duration) error {
	if !alive(pid) {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		return fmt.Errorf("process %d does not go away", pid)
	}
	return nil
}

// labProcesses finds every process that belongs to the lab, whatever
// recorded it or failed to: those whose network namespace is one of the
// lab's (agents, the datastore, iperf3 servers), and those whose command
// line is a Weft agent or datastore naming the lab's directory. This is
// how down cleans up after a crashed up.
func labProcesses(name string) ([]int, error) {
	nsNames, err := netns.List(name + "-")
	if err != nil {
		return nil, err
	}
	inodes := map[uint64]bool{}
	for _, n := range nsNames {
		var st syscall.Stat_t
		if err := syscall.Stat(netns.Path(n), &st); err == nil {
			inodes[st.Ino] = true
		}
	}
	dirArg := Dir(name) + "/"
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err == nil && inodes[st.Ino] {
			pids = append(pids, pid)
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmdline), "\x00")
		if len(argv) > 1 && (argv[1] == "agent" || argv[1] == DatastoreCommand || argv[1] == PodSyncCommand) && strings.Contains(string(cmdline), dirArg) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
