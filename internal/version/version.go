// Package version holds the version stamped into Weft's binaries.
package version

// Release is the release this tree makes: deploy/weft.yaml runs the image
// tagged with it, so that a manifest and the binaries in its image always
// come from the same source.
const Release = "v0.1.0"

// Version is set at build time with -ldflags "-X .../version.Version=...".
var Version = Release + "-dev"
