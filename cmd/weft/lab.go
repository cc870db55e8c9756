package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// The lab and its benchmarks run in weft-lab, installed beside weft.
func init() {
	register("lab", "a whole cluster on this machine in network namespaces (up, status, down, run, exec)", execLab("lab"))
	registerBench("cni", "pod ADD/DEL latency and pods/s: weft-cni against bridge+host-local", execLab("bench", "cni"))
	registerBench("throughput", "pod-to-pod throughput against the underlay, in a lab", execLab("bench", "throughput"))
	registerBench("join", "time from a new agent's start to its pod's first reply, in a lab", execLab("bench", "join"))
	registerBench("scale", "time to program 1000 peers and the agent's memory, in a lab", execLab("bench", "scale"))
	registerBench("policy", "NetworkPolicy at scale (1000 policies, 10,000 pods): apply times, memory, throughput ratio, in a lab", execLab("bench", "policy"))
	registerBench("chaos", "agents killed during pod churn, outages, a reboot and a link flap, in a lab", execLab("bench", "chaos"))
}

// execLab replaces this process with weft-lab, so that signals, exit codes
// and output are the lab's own.
func execLab(pre ...string) func(args []string) error {
	return func(args []string) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		bin := filepath.Join(filepath.Dir(exe), "weft-lab")
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s not found: the lab is in weft-lab, built beside weft by `make build`", bin)
		}
		argv := append([]string{bin}, pre...)
		return syscall.Exec(bin, append(argv, args...), os.Environ())
	}
}
