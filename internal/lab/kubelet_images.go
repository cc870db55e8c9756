package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/internal/lab/images"
	"github.com/weftnet/weft/internal/lab/kubelet"
)

// WriteImages writes the images a kubelet lab imports into every node's
// containerd (Weft's, under deploy/weft.yaml's name; the sandbox image;
// netcheck) from the binaries in binDir, one docker archive each in out,
// and returns their paths by image name.
func WriteImages(binDir, out string) (map[string]string, error) {
	weftRef, err := images.WeftImage()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, s := range images.Specs(binDir, weftRef) {
		file := strings.NewReplacer("/", "_", ":", "_").Replace(s.Ref) + ".tar"
		p := filepath.Join(out, file)
		if err := images.Write(s, p); err != nil {
			return nil, fmt.Errorf("image %s: %w", s.Ref, err)
		}
		paths[s.Ref] = p
	}
	return paths, nil
}

// ImportWeftImage writes Weft's image from the lab's binaries under ref
// (a new tag, for a rolling update) and imports it into every kubelet
// node's containerd.
func (l *Lab) ImportWeftImage(ref string) error {
	if !l.kubeletNodes() {
		return fmt.Errorf("lab %s's nodes do not run kubelet", l.Name)
	}
	bins, err := kubelet.FindBinaries(l.logf)
	if err != nil {
		return err
	}
	spec := images.Specs(filepath.Dir(l.WeftBin), ref)[0]
	path := filepath.Join(l.Dir, "images", "weft-"+strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := images.Write(spec, path); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		rt := kubelet.Node{Dir: n.Dir}
		// containerd's socket is in the lab's directory, outside the
		// node's bind mounts: reachable from here.
		out, err := exec.Command(bins.Ctr, "--address", rt.Socket(), "--namespace", "k8s.io", "images", "import", path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s into %s's containerd: %v: %s", ref, n.Name, err, out)
		}
	}
	return nil
}
