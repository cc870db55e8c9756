// Package process starts, watches and stops the processes of the lab's
// programs (agents, the datastore, kubelet nodes, the pod sync and the
// servers they run), each inside a network namespace. The lab and its
// programs outlive the command that started them, so they are found
// again by pid: Alive and SignalWait work on any pid, not only on a
// child of this process.
package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/netns"
)

// Proc is a process started inside one of the lab's namespaces. It runs
// in a session of its own, so that it outlives the command that started
// it; while this process lives, it is also reaped here, so that a killed
// one does not linger as a zombie that still looks alive.
type Proc struct {
	Cmd *exec.Cmd
	// Done is closed once the process has exited and been reaped.
	Done chan struct{}
}

// StartIn starts argv inside the named namespace, its output appended to
// logPath.
func StartIn(nsName, logPath string, argv []string) (*Proc, error) {
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
	p := &Proc{Cmd: cmd, Done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.Done)
	}()
	return p, nil
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Alive reports whether pid runs (and is not a zombie).
func Alive(pid int) bool {
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

// SignalWait sends sig to pid and waits up to timeout for it to go,
// then kills it.
func SignalWait(pid int, sig syscall.Signal, timeout time.Duration) error {
	if !Alive(pid) {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !Alive(pid) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	for i := 0; i < 100 && Alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if Alive(pid) {
		return fmt.Errorf("process %d does not go away", pid)
	}
	return nil
}

// LogTail returns the last lines of a log file, for error messages.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return "log " + path + ":\n  " + strings.Join(lines, "\n  ")
}
