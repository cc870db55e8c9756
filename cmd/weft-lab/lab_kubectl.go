package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lab/kubelet"
)

// labKubectl runs kubectl against the lab's API server with admin
// credentials: `weft lab kubectl [--name NAME] ARGS...`. Only --name is
// weft's; everything after it is kubectl's.
func labKubectl(args []string) error {
	name := "weft"
	if len(args) >= 2 && (args[0] == "--name" || args[0] == "-name") {
		name, args = args[1], args[2:]
	} else if len(args) >= 1 && len(args[0]) > 7 && args[0][:7] == "--name=" {
		name, args = args[0][7:], args[1:]
	}
	if err := lab.CheckName(name); err != nil {
		return err
	}
	l, err := lab.Open(name, nil)
	if err != nil {
		return err
	}
	cmd, err := l.Kubectl(args...)
	if err != nil {
		return err
	}
	return syscall.Exec(cmd.Path, cmd.Args, os.Environ())
}

// labImages writes the lab's container images as docker archives:
// `weft lab images [--bin-dir DIR] --out DIR`.
func labImages(args []string) error {
	fs := flag.NewFlagSet("weft lab images", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "", "directory holding weft, weft-cni, weft-pause and netcheck (default: this binary's directory)")
	out := fs.String("out", "", "directory to write the images to (one .tar each)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("usage: weft lab images [--bin-dir DIR] --out DIR")
	}
	if *binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		*binDir = filepath.Dir(exe)
	}
	paths, err := lab.WriteImages(*binDir, *out)
	if err != nil {
		return err
	}
	for ref, p := range paths {
		fmt.Printf("%s\t%s\n", ref, p)
	}
	return nil
}

func runLabNode(args []string) error {
	fs := flag.NewFlagSet("weft-lab "+kubelet.Command, flag.ContinueOnError)
	cfg := fs.String("config", "", "the node runtime's JSON config, written by `weft lab up --kubelet`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return kubelet.Run(*cfg)
}
