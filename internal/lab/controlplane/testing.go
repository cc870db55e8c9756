package controlplane

import "context"

// TB is the part of testing.TB that StartT needs; taking it rather than
// testing.TB keeps package testing out of weft-lab, which links this
// package to run the control plane of `weft lab --datastore kubernetes`.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// StartT starts a control plane for a test and stops it, removing every
// file and process, when the test ends, pass or fail.
func StartT(t TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the Kubernetes control plane: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}
