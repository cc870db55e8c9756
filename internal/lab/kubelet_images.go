package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/internal/labimage"
)

// WriteImages writes the images a kubelet lab imports into every node's
// containerd (Weft's, under deploy/weft.yaml's name; the sandbox image;
// netcheck) from the binaries in binDir, one docker archive each in out,
// and returns their paths by image name.
func WriteImages(binDir, out string) (map[string]string, error) {
	weftRef, err := labimage.WeftImage()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, s := range labimage.Specs(binDir, weftRef) {
		file := strings.NewReplacer("/", "_", ":", "_").Replace(s.Ref) + ".tar"
		p := filepath.Join(out, file)
		if err := labimage.Write(s, p); err != nil {
			return nil, fmt.Errorf("image %s: %w", s.Ref, err)
		}
		paths[s.Ref] = p
	}
	return paths, nil
}
