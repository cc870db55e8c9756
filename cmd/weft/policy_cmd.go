package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/netpol"
)

func init() {
	register("policy", "NAMESPACE/POD: the NetworkPolicies that select a pod and what they allow", runPolicy)
}

func runPolicy(args []string) error {
	fs, runDir, out := apiFlags("policy")
	// The pod may come before or after the flags.
	var pod string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pod, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if pod == "" && fs.NArg() == 1 {
		pod = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if ns, name, ok := strings.Cut(pod, "/"); !ok || ns == "" || name == "" {
		return fmt.Errorf("usage: weft policy NAMESPACE/POD [-o json]")
	}
	if *out != "text" && *out != "json" {
		return fmt.Errorf("-o %q: want text or json", *out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex, err := agentapi.NewClient(*runDir).Policy(ctx, pod)
	if err != nil {
		return err
	}
	if *out == "json" {
		return printJSON(ex)
	}
	printPolicy(os.Stdout, ex)
	return nil
}

func printPolicy(w io.Writer, ex netpol.Explanation) {
	fmt.Fprintf(w, "pod %s", ex.Pod)
	if ex.IP.IsValid() {
		fmt.Fprintf(w, " (%s on %s)", ex.IP, ex.Node)
	}
	fmt.Fprintln(w)
	open := func(isolated bool) string {
		if isolated {
			return "isolated: only what the policies below allow"
		}
		return "open: no policy selects it for this direction"
	}
	fmt.Fprintf(w, "  ingress: %s\n  egress:  %s\n", open(ex.IsolatedIngress), open(ex.IsolatedEgress))
	for _, p := range ex.Policies {
		fmt.Fprintf(w, "\n%s\n", p.Policy)
		for _, dir := range []struct {
			name     string
			isolates bool
			rules    []string
		}{{"ingress", p.IsolatesIngress, p.Ingress}, {"egress", p.IsolatesEgress, p.Egress}} {
			switch {
			case !dir.isolates:
			case len(dir.rules) == 0:
				fmt.Fprintf(w, "  %s: allows nothing\n", dir.name)
			default:
				for _, r := range dir.rules {
					fmt.Fprintf(w, "  %s: allows %s\n", dir.name, r)
				}
			}
		}
	}
}
