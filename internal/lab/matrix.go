package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Matrix is the connectivity of every pod to every other: OK[i][j] says
// whether every echo from Pods[i] to Pods[j] came back; Sent and Lost
// count the echoes each pair's ping actually sent and missed.
type Matrix struct {
	Pods []*PodState
	OK   [][]bool
	Sent [][]int
	Lost [][]int
}

// Full reports whether every pod reached every other.
func (m *Matrix) Full() bool { return len(m.Failures()) == 0 }

// Failures lists the pairs that did not connect, as "from→to".
func (m *Matrix) Failures() []string {
	var f []string
	for i := range m.Pods {
		for j := range m.Pods {
			if i != j && !m.OK[i][j] {
				f = append(f, m.Pods[i].Name+"→"+m.Pods[j].Name)
			}
		}
	}
	return f
}

// CheckMatrix pings every pod from every other, count echoes per pair,
// all pairs at once (each source's pings are independent sockets).
func (l *Lab) CheckMatrix(ctx context.Context, count int) (*Matrix, error) {
	pods := l.Pods()
	m := &Matrix{Pods: pods, OK: make([][]bool, len(pods)), Sent: make([][]int, len(pods)), Lost: make([][]int, len(pods))}
	for i := range pods {
		m.OK[i] = make([]bool, len(pods))
		m.Sent[i] = make([]int, len(pods))
		m.Lost[i] = make([]int, len(pods))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i, src := range pods {
		for j, dst := range pods {
			if i == j {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := Ping(ctx, src.Netns, dst.IP, count, 20*time.Millisecond, time.Second)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				m.OK[i][j] = err == nil && r.Received == count
				m.Sent[i][j], m.Lost[i][j] = r.Sent, r.Lost()
			}()
		}
	}
	wg.Wait()
	return m, firstErr
}

// WaitMatrix checks the matrix until it is full or timeout passes; the
// error names the pairs that still fail.
func (l *Lab) WaitMatrix(ctx context.Context, timeout time.Duration) (*Matrix, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := l.CheckMatrix(ctx, 1)
		if err != nil {
			return m, err
		}
		if m.Full() {
			return m, nil
		}
		if time.Now().After(deadline) {
			f := m.Failures()
			return m, fmt.Errorf("after %s, %d of %d pod pairs still cannot reach each other: %s",
				timeout, len(f), len(m.Pods)*(len(m.Pods)-1), strings.Join(f, ", "))
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Print writes the matrix as a table: rows send, columns answer.
func (m *Matrix) Print(w io.Writer) {
	width, label := 6, 10
	for _, p := range m.Pods {
		width = max(width, len(p.Name)+1)
		label = max(label, len(p.Name)+len(p.IP.String())+3)
	}
	fmt.Fprintf(w, "%-*s", label, "from \\ to")
	for _, p := range m.Pods {
		fmt.Fprintf(w, "%-*s", width, p.Name)
	}
	fmt.Fprintln(w)
	for i, p := range m.Pods {
		fmt.Fprintf(w, "%-*s", label, fmt.Sprintf("%s %s", p.Name, p.IP))
		for j := range m.Pods {
			mark := "·"
			if i != j {
				mark = "✓"
				if !m.OK[i][j] {
					mark = "✗"
				}
			}
			fmt.Fprintf(w, "%-*s", width, mark)
		}
		fmt.Fprintln(w)
	}
	pairs := len(m.Pods) * (len(m.Pods) - 1)
	f := m.Failures()
	sent, lost := 0, 0
	for i := range m.Lost {
		for j := range m.Lost[i] {
			sent += m.Sent[i][j]
			lost += m.Lost[i][j]
		}
	}
	fmt.Fprintf(w, "%d/%d pod pairs connected, %d ICMP echoes sent, %d lost\n", pairs-len(f), pairs, sent, lost)
	if len(f) > 0 {
		fmt.Fprintf(w, "not connected: %s\n", strings.Join(f, ", "))
	}
}
