package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab/kubelet"
	"github.com/weftnet/weft/internal/lab/process"
)

// stopKubeletNodes stops the lab's node runtimes (kubelet.Run), each
// of which takes its kubelet, containers, containerd and cgroups down,
// before Down kills whatever else is left.
func stopKubeletNodes(name string) error {
	if _, err := os.Stat(filepath.Join(Dir(name), kubeletMarker)); err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	dirArg := Dir(name) + "/"
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		argv := strings.Split(string(b), "\x00")
		if len(argv) > 1 && argv[1] == kubelet.Command && strings.Contains(string(b), dirArg) {
			pids = append(pids, pid)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(pids))
	for i, pid := range pids {
		wg.Go(func() { errs[i] = process.SignalWait(pid, syscall.SIGTERM, 60*time.Second) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cleanupKubeletNodes removes what stopped node runtimes may have left
// (after a crash or a kill): processes in the nodes' cgroups, the
// cgroups, and the host's mount points once no kubelet lab is left.
func cleanupKubeletNodes(name string) error {
	var errs []error
	for _, cg := range kubelet.LabCgroups(name) {
		errs = append(errs, kubelet.KillCgroups(cg), kubelet.RemoveCgroups(cg))
	}
	if _, err := os.Stat(filepath.Join(Dir(name), kubeletMarker)); err == nil {
		errs = append(errs, removeHostDirs(name))
	}
	return errors.Join(errs...)
}
