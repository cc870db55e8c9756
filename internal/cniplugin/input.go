package cniplugin

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// MaxConfigBytes bounds the network config read on stdin. A real config
// with a prevResult is a few kilobytes; without a bound a runtime (or
// anyone who can run the plugin) could make it read without end.
const MaxConfigBytes = 1 << 20

// ReadConfig reads the network config from r, refusing one larger than
// MaxConfigBytes with code 7 before it is parsed.
func ReadConfig(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxConfigBytes+1))
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("read the network config from stdin: %v", err), "")
	}
	if len(b) > MaxConfigBytes {
		return nil, invalidConfig(fmt.Sprintf("network config on stdin is larger than %d bytes (1 MiB): refused", MaxConfigBytes))
	}
	return b, nil
}

// Main is weft-cni's main: skel's dispatch, with stdin bounded first.
// skel reads stdin whole, so the bounded copy is handed to it through a
// pipe in place of the real stdin.
func Main() {
	if cmd := os.Getenv("CNI_COMMAND"); cmd != "" && cmd != "VERSION" {
		b, err := ReadConfig(os.Stdin)
		if err != nil {
			exitWith(err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			exitWith(types.NewError(types.ErrIOFailure, fmt.Sprintf("pipe the network config: %v", err), ""))
		}
		go func() {
			w.Write(b)
			w.Close()
		}()
		os.Stdin = r
	}
	// No "about" text for skel: without CNI_COMMAND the caller gets a CNI
	// error object (code 4) as the spec asks, not a banner and exit 0.
	skel.PluginMainFuncs(Funcs(), Versions, "")
}

func exitWith(err error) {
	e, ok := err.(*types.Error)
	if !ok {
		e = types.NewError(types.ErrInternal, err.Error(), "")
	}
	e.Print()
	os.Exit(1)
}

// containerIDChars is what the spec allows in a container id.
var containerIDChars = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// maxPath bounds CNI_NETNS as the kernel bounds a path.
const maxPath = 4096

// checkArgs checks what the runtime passes in the environment, beyond
// what skel checks, before anything is made: the spec's container id,
// an interface name the kernel accepts, and a netns path that is
// absolute and clean. Errors are code 4, invalid environment.
func checkArgs(verb string, args *skel.CmdArgs) error {
	bad := func(format string, a ...any) error {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf(format, a...), "")
	}
	switch verb {
	case "GC", "STATUS":
		return nil
	}
	if !containerIDChars.MatchString(args.ContainerID) {
		return bad("CNI_CONTAINERID %q: must start with a letter or digit and hold only letters, digits, '_', '.' and '-'", args.ContainerID)
	}
	if err := checkIfName(args.IfName); err != nil {
		return bad("CNI_IFNAME: %v", err)
	}
	if verb == "DEL" && args.Netns == "" {
		return nil // DEL works without the pod's namespace
	}
	if args.Netns == "" || len(args.Netns) > maxPath || !filepath.IsAbs(args.Netns) || strings.ContainsRune(args.Netns, 0) {
		return bad("CNI_NETNS %q: not an absolute path", args.Netns)
	}
	if filepath.Clean(args.Netns) != args.Netns {
		return bad("CNI_NETNS %q: not a clean path (it has '.', '..' or repeated '/')", args.Netns)
	}
	return nil
}
