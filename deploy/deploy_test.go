package deploy

import (
	"regexp"
	"testing"

	"github.com/weftnet/weft/internal/version"
)

// Every container of the manifest runs the image of this release, never a
// floating tag: a node that pulls it later gets the same binaries.
func TestManifestPinsTheReleaseImage(t *testing.T) {
	images := regexp.MustCompile(`(?m)^\s*image:\s*(\S+)\s*$`).FindAllSubmatch(Manifest, -1)
	if len(images) == 0 {
		t.Fatal("no image in deploy/weft.yaml")
	}
	want := "weftnet/weft:" + version.Release
	for _, m := range images {
		if got := string(m[1]); got != want {
			t.Errorf("image %s, want %s", got, want)
		}
	}
}
