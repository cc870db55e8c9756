package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// stuckAfter is how long the main loop may go without a turn before
// /healthz fails; it turns at least every 2 s.
const stuckAfter = 30 * time.Second

// Healthy reports whether the agent's loop is turning.
func (a *Agent) Healthy() error {
	if since := time.Since(time.Unix(0, a.heartbeat.Load())); since > stuckAfter {
		return fmt.Errorf("main loop stuck for %s", since.Round(time.Second))
	}
	return nil
}

// Ready reports whether the node can take pods: lease held, node state
// written, and the datapath reconciled once.
func (a *Agent) Ready() error {
	var missing []string
	if !a.leaseHeld.Load() {
		missing = append(missing, "no subnet lease yet")
	}
	if !a.stateWritten.Load() {
		missing = append(missing, "node state not written yet")
	}
	if !a.reconciled.Load() {
		missing = append(missing, "datapath not reconciled yet")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s", strings.Join(missing, "; "))
	}
	return nil
}

// serveHealth serves /healthz and /readyz on cfg.HealthAddr. Listening is
// done now, so that a taken port is a startup error and not a log line.
func (a *Agent) serveHealth() (stop func(), err error) {
	if a.cfg.HealthAddr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", a.cfg.HealthAddr)
	if err != nil {
		return nil, fmt.Errorf("serve health on %s: %w", a.cfg.HealthAddr, err)
	}
	mux := http.NewServeMux()
	check := func(fn func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if err := fn(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		}
	}
	mux.HandleFunc("/healthz", check(a.Healthy))
	mux.HandleFunc("/readyz", check(a.Ready))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	a.log.Info("serving health", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
