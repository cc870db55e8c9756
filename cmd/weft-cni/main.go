// Command weft-cni is Weft's CNI plugin, run by the container runtime for
// every pod. The verbs live in internal/cniplugin.
package main

import (
	"fmt"
	"os"

	"github.com/weftnet/weft/internal/cniplugin"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(cniplugin.About())
		return
	}
	// Stdin is bounded (cniplugin.MaxConfigBytes) before skel reads it.
	cniplugin.Main()
}
