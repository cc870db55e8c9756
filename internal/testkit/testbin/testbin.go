// Package testbin gives tests the paths of Weft's real binaries: the ones
// `make` built (WEFT_BIN_DIR), or else builds them once per test process,
// so that `go test ./...` alone also works.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

var (
	once   sync.Once
	dir    string
	errBld error
)

// Dir returns a directory holding weft, weft-cni, weft-portmap and
// weft-lab (and the lab's image binaries weft-pause and netcheck).
func Dir() (string, error) {
	once.Do(func() {
		if d := os.Getenv("WEFT_BIN_DIR"); d != "" {
			dir = d
			return
		}
		root, err := moduleRoot()
		if err != nil {
			errBld = err
			return
		}
		d, err := os.MkdirTemp("", "weft-testbin-")
		if err != nil {
			errBld = err
			return
		}
		for _, c := range []string{"weft", "weft-cni", "weft-portmap", "weft-lab", "weft-pause", "netcheck"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(d, c), pkg(c))
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				errBld = fmt.Errorf("build %s: %v\n%s", c, err, out)
				return
			}
		}
		dir = d
	})
	return dir, errBld
}

// Path returns the path of the named binary ("weft", "weft-cni", "weft-lab").
func Path(name string) (string, error) {
	d, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, name), nil
}

// pkg is the package `make build` builds binary c from: weft-portmap is
// containernetworking's portmap, a tool of Weft's module.
func pkg(c string) string {
	if c == "weft-portmap" {
		return "github.com/containernetworking/plugins/plugins/meta/portmap"
	}
	return "./cmd/" + c
}

func moduleRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("cannot find the module root from %s", file)
	}
	return root, nil
}
