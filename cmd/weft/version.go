package main

import (
	"fmt"
	"runtime"

	"github.com/weftnet/weft/internal/version"
)

func init() {
	register("version", "print Weft's version", func([]string) error {
		fmt.Printf("weft %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	})
}
