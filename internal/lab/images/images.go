// Package images writes the container images a lab with real kubelets
// runs, from Weft's static binaries and without a container engine: each
// image is one layer holding the binaries, packed as a docker archive
// that `ctr images import` loads. It owns nothing but the files it writes.
package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The lab's own images. Weft's image name is deploy/weft.yaml's (see
// WeftImage); these two are the lab's.
const (
	PauseImage    = "weft.dev/lab/pause:v1"
	NetcheckImage = "weft.dev/lab/netcheck:v1"
)

// Spec is one image: binaries copied to / under their base names, and
// the command it runs.
type Spec struct {
	Ref        string
	Binaries   []string
	Entrypoint []string
}

// Specs are the lab's images made from the binaries in binDir (weft,
// weft-cni, weft-portmap, weft-pause, netcheck, as `make build` leaves
// them), weftRef naming Weft's image, which holds what deploy/Dockerfile
// copies.
func Specs(binDir, weftRef string) []Spec {
	b := func(n string) string { return filepath.Join(binDir, n) }
	return []Spec{
		{Ref: weftRef, Binaries: []string{b("weft"), b("weft-cni"), b("weft-portmap")}, Entrypoint: []string{"/weft"}},
		{Ref: PauseImage, Binaries: []string{b("weft-pause")}, Entrypoint: []string{"/weft-pause"}},
		{Ref: NetcheckImage, Binaries: []string{b("netcheck")}, Entrypoint: []string{"/netcheck"}},
	}
}

// Write packs s into a docker archive at path (written whole, then renamed).
func Write(s Spec, path string) error {
	img, err := Build(s)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(s.Ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", s.Ref, err)
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write image %s to %s: %w", s.Ref, path, err)
	}
	return os.Rename(tmp, path)
}

// Build makes s's image: one layer, a linux config for this machine's
// architecture (containerd imports only images of its platform).
func Build(s Spec) (v1.Image, error) {
	layerTar, err := layer(s.Binaries)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Env = []string{"PATH=/"}
	return mutate.ConfigFile(img, cf)
}

// layer is a tar of the binaries at /, with fixed times so that the same
// binaries give the same image digest.
func layer(bins []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, b := range bins {
		data, err := os.ReadFile(b)
		if err != nil {
			return nil, fmt.Errorf("%w (build it with `make build`)", err)
		}
		hdr := &tar.Header{Name: filepath.Base(b), Mode: 0o755, Size: int64(len(data)),
			Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
