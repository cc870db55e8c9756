package controlplane

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testkit/freeport"
)

// The control plane's processes get SIGKILL when their parent thread dies,
// so that a test binary killed by its timeout leaves no apiserver behind.
// Linux ties that signal to the thread that forked the child, not the
// process, and Go threads that other code locks (netns helpers do) may
// exit; so every child is forked from one thread that is locked for the
// life of the process and never exits.
type spawnReq struct {
	cmd    *exec.Cmd
	nsPath string
	done   chan error
}

var (
	spawnc    = make(chan spawnReq)
	spawnOnce sync.Once
)

// startSpawner starts the spawner thread on first use, so that programs
// that link this package without starting a control plane (weft itself)
// do not hold a thread for it.
func startSpawner() {
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the process
		for r := range spawnc {
			r.done <- startIn(r.nsPath, r.cmd)
		}
	}()
}

// startIn forks cmd on the current (locked) thread, inside nsPath if set,
// and brings the thread back to its own namespace.
func startIn(nsPath string, cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if nsPath == "" {
		return cmd.Start()
	}
	orig, err := ns.GetCurrentNS()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := ns.GetNS(nsPath)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter %s: %w", nsPath, err)
	}
	startErr := cmd.Start()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The spawner thread is stuck in the wrong namespace; nothing
		// later can be trusted, so stop here.
		panic(fmt.Sprintf("controlplane: cannot return from %s: %v", nsPath, err))
	}
	return startErr
}

func spawn(nsPath string, cmd *exec.Cmd) error {
	spawnOnce.Do(startSpawner)
	done := make(chan error, 1)
	spawnc <- spawnReq{cmd: cmd, nsPath: nsPath, done: done}
	return <-done
}

// DialContextIn returns a dial function whose connections are made from
// inside the network namespace at nsPath (the current one when empty). A
// socket belongs to the namespace it was created in, so a client in the
// host namespace can talk to a server in a lab namespace without the host
// getting an address or a route into it.
func DialContextIn(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if nsPath == "" {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		target, err := ns.GetNS(nsPath)
		if err != nil {
			return nil, err
		}
		defer target.Close()
		var conn net.Conn
		err = target.Do(func(ns.NetNS) error {
			var err error
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

// freePort picks a free TCP port on addr inside nsPath (see freeport).
func freePort(nsPath, addr string) (int, error) {
	var port int
	get := func() (err error) {
		port, err = freeport.Pick(addr)
		return err
	}
	if nsPath == "" {
		return port, get()
	}
	target, err := ns.GetNS(nsPath)
	if err != nil {
		return 0, err
	}
	defer target.Close()
	return port, target.Do(func(ns.NetNS) error { return get() })
}
