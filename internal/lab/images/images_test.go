package images

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/weftnet/weft/deploy"
)

// The lab's Weft image holds the binaries deploy/Dockerfile copies, so
// that the kubelet lab installs what a release image would.
func TestWeftImageHoldsWhatTheDockerfileCopies(t *testing.T) {
	var copied []string
	for _, line := range strings.Split(string(deploy.Dockerfile), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "COPY" {
			for _, src := range f[1 : len(f)-1] {
				copied = append(copied, filepath.Base(src))
			}
		}
	}
	var inImage []string
	for _, b := range Specs("/bin", "weftnet/weft:test")[0].Binaries {
		inImage = append(inImage, filepath.Base(b))
	}
	if len(copied) == 0 || !slices.Equal(copied, inImage) {
		t.Errorf("deploy/Dockerfile copies %v, the lab's image holds %v", copied, inImage)
	}
}

func TestWeftImageIsTheManifests(t *testing.T) {
	ref, err := WeftImage()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "weftnet/weft:") {
		t.Errorf("WeftImage = %q, want weftnet/weft:TAG", ref)
	}
}

// An archive read back has the tag, the entrypoint and the binaries,
// executable, at /.
func TestWriteMakesAnImportableArchive(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "netcheck")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "netcheck.tar")
	if err := Write(Spec{Ref: NetcheckImage, Binaries: []string{bin}, Entrypoint: []string{"/netcheck"}}, path); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(NetcheckImage)
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/netcheck" {
		t.Errorf("config: os %q entrypoint %q", cf.OS, cf.Config.Entrypoint)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(tr)
	if h.Name != "netcheck" || h.Mode != 0o755 || string(body) != "#!binary" {
		t.Errorf("layer holds %s mode %o %q", h.Name, h.Mode, body)
	}
	if err := Write(Spec{Ref: NetcheckImage, Binaries: []string{filepath.Join(dir, "missing")}}, path); err == nil {
		t.Error("Write with a missing binary succeeded")
	}
}
