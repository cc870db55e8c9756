package images

import (
	"fmt"
	"regexp"

	"github.com/weftnet/weft/deploy"
)

var imageLine = regexp.MustCompile(`(?m)^\s*image:\s*"?([^"\s]+)"?\s*$`)

// WeftImage is the image deploy/weft.yaml runs, so that the lab's image
// carries the very name and tag the shipped manifest asks for.
func WeftImage() (string, error) {
	refs := map[string]bool{}
	var first string
	for _, m := range imageLine.FindAllSubmatch(deploy.Manifest, -1) {
		r := string(m[1])
		if first == "" {
			first = r
		}
		refs[r] = true
	}
	if len(refs) != 1 {
		return "", fmt.Errorf("deploy/weft.yaml names %d images, want one: %v", len(refs), refs)
	}
	return first, nil
}
