package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/names"
	"golang.org/x/sys/unix"
)

// SocketPath is the API socket for a run directory.
func SocketPath(runDir string) string { return filepath.Join(runDir, names.APISocket) }

// Listen creates the API socket in runDir, readable and writable by root
// only. A socket left by an agent that died is replaced; a live one (an
// agent still answering) is an error, so that two agents never share it.
func Listen(runDir string) (net.Listener, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run dir %s: %w", runDir, err)
	}
	path := SocketPath(runDir)
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use: another agent is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// The socket is bound inside a fresh directory only root can enter,
	// made 0600 there and then renamed into place: at no moment can
	// another user connect, and the process umask (shared with every other
	// goroutine) is left alone.
	tmp, err := os.MkdirTemp(runDir, ".api-")
	if err != nil {
		return nil, fmt.Errorf("create socket dir in %s: %w", runDir, err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, names.APISocket)
	l, err := net.Listen("unix", tmpPath)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	// The listener must not unlink tmpPath on Close: after the rename that
	// name no longer exists, and Serve removes the real one.
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("move socket into %s: %w", path, err)
	}
	return &peerCheckListener{ul}, nil
}

// peerCheckListener drops connections from any user other than the
// agent's own (root): the file mode already keeps them out, this holds
// even if someone loosens the mode.
type peerCheckListener struct{ *net.UnixListener }

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if err := checkPeer(c); err != nil {
			c.Close()
			continue
		}
		return c, nil
	}
}

func checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("uid %d may not use the agent API", cred.Uid)
	}
	return nil
}

// Handler serves the API for p.
func Handler(p Provider) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		s, err := p.Status(r.Context())
		if err != nil {
			writeError(w, fmt.Errorf("status: %w", err))
			return
		}
		if !s.StartedAt.IsZero() {
			s.UptimeSeconds = int64(time.Since(s.StartedAt).Seconds())
		}
		if s.Degraded == nil {
			s.Degraded = []string{}
		}
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("GET /peers", func(w http.ResponseWriter, r *http.Request) {
		ps, err := p.Peers(r.Context())
		if err != nil {
			writeError(w, fmt.Errorf("peers: %w", err))
			return
		}
		if ps == nil {
			ps = []Peer{}
		}
		writeJSON(w, http.StatusOK, ps)
	})
	mux.HandleFunc("GET /policy", func(w http.ResponseWriter, r *http.Request) {
		ns, name, ok := strings.Cut(r.URL.Query().Get("pod"), "/")
		if !ok || ns == "" || name == "" {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "want ?pod=NAMESPACE/NAME"})
			return
		}
		ex, err := p.Policy(r.Context(), ns, name)
		if err != nil {
			writeError(w, fmt.Errorf("policy: %w", err))
			return
		}
		writeJSON(w, http.StatusOK, ex)
	})
	return mux
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Serve answers the API on the socket in runDir until ctx is done, then
// removes the socket.
func Serve(ctx context.Context, runDir string, p Provider) error {
	l, err := Listen(runDir)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: Handler(p), ReadHeaderTimeout: 5 * time.Second}
	// Ending the shutdown goroutine's wait when Serve fails on its own
	// reports that failure now, not when the agent stops.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err = srv.Serve(l)
	cancel()
	<-done
	os.Remove(SocketPath(runDir))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("serve agent API: %w", err)
	}
	return nil
}
