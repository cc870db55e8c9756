// Package freeport picks a TCP port for a server that is started later
// (etcd, kube-apiserver), in the calling thread's network namespace.
//
// Asking the kernel for port 0 returns a port of the ephemeral range,
// which the kernel also hands to outgoing connections: between the pick
// and the server's bind, any connection can take it ("address already in
// use"). Ports below that range are never given to outgoing connections,
// so a port picked there stays free unless another server picks the same
// one at random.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the smallest port picked: below it are well-known and
// registered services' ports.
const lowest = 20000

// Pick returns a port on addr that nothing listens on now, outside the
// ephemeral range when the range leaves room below it.
func Pick(addr string) (int, error) {
	lo := ephemeralLow()
	if lo-lowest >= 1000 {
		for range 50 {
			port := lowest + rand.IntN(lo-lowest)
			l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
			if err != nil {
				continue // taken: try another
			}
			return port, l.Close()
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", addr, err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

// ephemeralLow is the first port of the namespace's ephemeral range
// (32768 when it cannot be read, Linux's default).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo < 1 || lo > 65535 {
		return 32768
	}
	return lo
}
