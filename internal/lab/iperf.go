package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab/process"
	"github.com/weftnet/weft/internal/netns"
)

// iperfPort is the port iperf3 servers listen on inside lab namespaces.
const iperfPort = 5201

// Throughput measures TCP throughput with iperf3 from namespace fromNS to
// dst, which must be an address of namespace toNS, for dur. It returns
// bits per second as the receiver counted them.
func (l *Lab) Throughput(ctx context.Context, fromNS, toNS string, dst netip.Addr, dur time.Duration) (float64, error) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return 0, fmt.Errorf("iperf3 not found: install Debian's iperf3 (hack/install-deps.sh)")
	}
	logPath := filepath.Join(l.Dir, "iperf3-"+toNS+".log")
	srv, err := process.StartIn(toNS, logPath, []string{"iperf3", "--server", "--port", strconv.Itoa(iperfPort)})
	if err != nil {
		return 0, err
	}
	defer func() {
		srv.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-srv.Done:
		case <-time.After(3 * time.Second):
			srv.Cmd.Process.Kill()
			<-srv.Done
		}
		os.Remove(logPath)
	}()
	secs := strconv.FormatFloat(dur.Seconds(), 'f', 1, 64)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, "iperf3", "--client", dst.String(), "--port", strconv.Itoa(iperfPort), "--time", secs, "--json")
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := netns.Start(netns.Path(fromNS), cmd)
		if err == nil {
			err = cmd.Wait()
		}
		bps, perr := parseIperf(out.Bytes())
		if err == nil && perr == nil {
			return bps, nil
		}
		// The server may not listen yet: iperf3 then fails at once.
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("iperf3 %s → %s: %w %s", fromNS, dst, errors.Join(err, perr), bytes.TrimSpace(errb.Bytes()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func parseIperf(b []byte) (float64, error) {
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("parse iperf3 output: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 reported no throughput")
	}
	return r.End.SumReceived.BitsPerSecond, nil
}
