package preflight

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// socket is one listening TCP socket or bound, unconnected UDP socket of
// the network namespace preflight runs in.
type socket struct {
	proto string // "tcp" or "udp"
	addr  netip.AddrPort
	inode uint64 // 0 for the kernel's own sockets (VXLAN and other tunnels)
}

// listeners reads the sockets of the calling thread's network namespace.
// /proc/thread-self/net, not /proc/net: the latter follows the process's
// main thread, which may sit in another namespace than this one.
func listeners() ([]socket, error) {
	var all []socket
	for _, f := range []struct{ file, proto, state string }{
		{"tcp", "tcp", "0A"}, {"tcp6", "tcp", "0A"}, // LISTEN
		{"udp", "udp", "07"}, {"udp6", "udp", "07"}, // unconnected
	} {
		path := filepath.Join("/proc/thread-self/net", f.file)
		socks, err := parseProcNet(path, f.proto, f.state)
		if os.IsNotExist(err) && strings.HasSuffix(f.file, "6") {
			continue // IPv6 disabled
		}
		if err != nil {
			return nil, err
		}
		all = append(all, socks...)
	}
	return all, nil
}

func parseProcNet(path, proto, state string) ([]socket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []socket
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != state {
			continue
		}
		ap, err := parseHexAddrPort(fields[1])
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		inode, _ := strconv.ParseUint(fields[9], 10, 64)
		out = append(out, socket{proto: proto, addr: ap, inode: inode})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// parseHexAddrPort parses /proc/net's "0100007F:1F90": the address in the
// kernel's byte order, 32 bits at a time, the port in hex.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// owner is the process holding a socket.
type owner struct {
	pid  int
	comm string
}

func (o owner) String() string {
	if o.pid == 0 {
		return o.comm
	}
	return fmt.Sprintf("%s (pid %d)", o.comm, o.pid)
}

// owners maps socket inodes to the processes holding them, by reading
// every process's fd table once. Processes that vanish meanwhile or that
// cannot be read are skipped: the port is still reported, without a name.
func owners(inodes map[uint64]bool) map[uint64]owner {
	out := map[uint64]owner{}
	if len(inodes) == 0 {
		return out
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"), 10, 64)
			if err != nil || !inodes[ino] {
				continue
			}
			if _, seen := out[ino]; !seen {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				out[ino] = owner{pid: pid, comm: strings.TrimSpace(string(comm))}
			}
		}
	}
	return out
}
