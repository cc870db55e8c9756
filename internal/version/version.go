// Package version holds the version stamped into Weft's binaries.
package version

// Version is set at build time with -ldflags "-X .../version.Version=...".
var Version = "v0.1.0-dev"
