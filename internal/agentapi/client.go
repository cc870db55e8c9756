package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/weftnet/weft/internal/netpol"
)

// Client talks to the agent on this node through its socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent whose run directory is runDir.
func NewClient(runDir string) *Client {
	path := SocketPath(runDir)
	return &Client{
		socket: path,
		http: &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", path)
				},
			},
		},
	}
}

// Status fetches GET /status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.get(ctx, "/status", &s)
	return s, err
}

// Peers fetches GET /peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var ps []Peer
	err := c.get(ctx, "/peers", &ps)
	return ps, err
}

// Policy fetches GET /policy for the pod namespace/name.
func (c *Client) Policy(ctx context.Context, pod string) (netpol.Explanation, error) {
	var ex netpol.Explanation
	err := c.get(ctx, "/policy?pod="+url.QueryEscape(pod), &ex)
	return ex, err
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://weft-agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is made up; the socket path says more
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("no agent socket at %s: is the Weft agent running on this node (or is --run-dir wrong)? %w", c.socket, err)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("the agent socket %s is root only: run this as root: %w", c.socket, err)
		}
		return fmt.Errorf("ask the agent at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read %s from the agent: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("agent: %s", e.Error)
		}
		return fmt.Errorf("agent answered %s for %s", resp.Status, path)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("parse %s from the agent: %w", path, err)
	}
	return nil
}
