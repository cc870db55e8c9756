package policyctl

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBridgeNFIsTurnedOnOrReported(t *testing.T) {
	dir := t.TempDir()
	c := &Controller{cfg: Config{ProcSysNet: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := c.ensureBridgeNF(); err == nil || !strings.Contains(err.Error(), "br_netfilter is not loaded") {
		t.Errorf("without the sysctl: %v", err)
	}
	path := filepath.Join(dir, "bridge", "bridge-nf-call-iptables")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.ensureBridgeNF(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "1" {
		t.Errorf("sysctl is %q, want 1", b)
	}
}
