// Command weft-cni is Weft's CNI plugin, run by the container runtime for
// every pod. The verbs live in internal/cniplugin.
package main

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/weftnet/weft/internal/cniplugin"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(cniplugin.About())
		return
	}
	// No "about" text for skel: without CNI_COMMAND the caller gets a CNI
	// error object (code 4) as the spec asks, not a banner and exit 0.
	skel.PluginMainFuncs(cniplugin.Funcs(), cniplugin.Versions, "")
}
