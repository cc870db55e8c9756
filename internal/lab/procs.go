package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/weftnet/weft/internal/netns"
)

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
