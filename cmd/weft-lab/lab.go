package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lab/kubelet"
	"github.com/weftnet/weft/internal/netns"
)

func init() {
	register("lab", "a whole cluster on this machine in network namespaces (up, status, down, run, exec)", runLab)
	registerHidden(lab.DatastoreCommand, runLabDatastore)
	registerHidden(kubelet.Command, runLabNode)
}

const labUsage = `usage: weft lab up|status|down|run|exec [flags]

  up      build a lab: underlay, datastore, nodes with agents, pods; returns
          once every pod reaches every other
  status  the lab's nodes, subnets, agents and pods
  down    remove everything the lab made (also after a crashed up)
  run     up, connectivity matrix, throughput, down (exit 1 unless the
          matrix is full)
  exec    weft lab exec [--name NAME] NODE|POD|ul -- CMD...: run CMD in a
          node's or pod's network namespace, or the underlay's (ul)
  kubectl weft lab kubectl [--name NAME] ARGS...: kubectl with admin
          credentials against the lab's API server (--datastore kubernetes
          or --kubelet labs)
  images  weft lab images --out DIR: write the images of --kubelet labs

Run 'weft lab SUBCOMMAND -h' for its flags.`

func runLab(args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, labUsage)
		return errors.New("no lab subcommand given")
	}
	switch args[0] {
	case "up":
		return labUp(args[1:])
	case "run":
		return labRun(args[1:])
	case "status":
		return labStatus(args[1:])
	case "down":
		return labDown(args[1:])
	case "exec":
		return labExec(args[1:])
	case "kubectl":
		return labKubectl(args[1:])
	case "images":
		return labImages(args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(os.Stderr, labUsage)
		return nil
	}
	fmt.Fprintln(os.Stderr, labUsage)
	return fmt.Errorf("unknown lab subcommand %q", args[0])
}

// labFlags are up's and run's flags.
func labFlags(name string, cfg *lab.Config) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("weft lab "+name, flag.ContinueOnError)
	fs.StringVar(&cfg.Name, "name", cfg.Name, "lab name: its namespaces are NAME-ul, NAME-n1, NAME-n1-p1, ...")
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of nodes")
	fs.IntVar(&cfg.PodsPerNode, "pods-per-node", cfg.PodsPerNode, "pods on each node")
	fs.Var(&cfg.Backend, "backend", "agents' backend: auto, host-gw or vxlan")
	fs.IntVar(&cfg.Segments, "segments", cfg.Segments, "underlay L2 segments (2: joined by a router, nodes alternate between them)")
	fs.IntVar(&cfg.SubnetLen, "subnet-len", cfg.SubnetLen, "prefix length of each node's pod subnet")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "subnet lease TTL")
	fs.DurationVar(&cfg.ReadyTimeout, "timeout", cfg.ReadyTimeout, "how long to wait for agents and for full connectivity")
	fs.String("cluster-cidr", cfg.ClusterCIDR.String(), "cluster CIDR the nodes' subnets are leased from")
	binDir := fs.String("bin-dir", "", "directory holding weft, weft-cni and weft-lab (default: this binary's directory)")
	fs.BoolVar(&cfg.Kubelet, "kubelet", false, "run a real containerd and kubelet on every node (and kube-scheduler); Weft is then installed with `weft lab kubectl apply -f deploy/weft.yaml`")
	fs.BoolVar(&cfg.Install, "install", false, "with --kubelet: also apply deploy/weft.yaml and wait until every node is Ready")
	fs.Func("datastore", "lab datastore: "+strings.Join(lab.DatastoreKinds, " or ")+" (default etcd)", func(v string) error { cfg.Datastore = v; return nil })
	return fs, binDir
}

func parseLabConfig(name string, args []string) (lab.Config, error) {
	cfg := lab.DefaultConfig()
	fs, binDir := labFlags(name, &cfg)
	cidr := fs.Lookup("cluster-cidr")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	p, err := netip.ParsePrefix(cidr.Value.String())
	if err != nil {
		return cfg, fmt.Errorf("--cluster-cidr: %w", err)
	}
	cfg.ClusterCIDR = p
	dir := *binDir
	if dir == "" {
		exe, err := os.Executable()
		if err != nil {
			return cfg, err
		}
		dir = filepath.Dir(exe)
	}
	cfg.WeftBin = filepath.Join(dir, "weft")
	cfg.CNIBin = filepath.Join(dir, "weft-cni")
	cfg.Log = os.Stderr
	return cfg, nil
}

func labUp(args []string) error {
	cfg, err := parseLabConfig("up", args)
	if err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return err
	}
	l.PrintStatus(ctx, os.Stdout)
	if cfg.Kubelet && !cfg.Install {
		fmt.Printf("\nthe nodes run kubelet and stay NotReady until a network is installed: `weft lab kubectl --name %s apply -f deploy/weft.yaml`\n", l.Name)
	}
	fmt.Printf("\nstep in with `ip netns exec %s-n1 ...` or `weft lab exec --name %s n1 -- ...`; remove with `weft lab down --name %s`\n", l.Name, l.Name, l.Name)
	return nil
}

func labRun(args []string) error {
	cfg, err := parseLabConfig("run", args)
	if err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	start := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			fmt.Fprintf(os.Stderr, "weft lab run: removing the lab: %v\n", derr)
		}
	}()
	fmt.Printf("\nlab %s up in %s: %d nodes, %d pods, backend %s\n\n", l.Name, time.Since(start).Round(time.Millisecond), len(l.Nodes), len(l.Pods()), l.Backend)
	m, err := l.CheckMatrix(ctx, 3)
	if err != nil {
		return err
	}
	fmt.Println("connectivity (3 ICMP echoes per pair, from the row's pod to the column's):")
	m.Print(os.Stdout)
	if len(l.Nodes) >= 2 && l.PodsPerNode >= 1 {
		fmt.Println()
		if err := printThroughput(ctx, l); err != nil {
			return err
		}
	}
	if !m.Full() {
		return fmt.Errorf("%d pod pairs cannot reach each other", len(m.Failures()))
	}
	return nil
}

// printThroughput measures n1's first pod to n2's first pod against n1 to
// n2 on the underlay, interleaved, and prints both and their ratio.
func printThroughput(ctx context.Context, l *lab.Lab) error {
	a, b := l.Nodes[0], l.Nodes[1]
	pa, pb := a.Pods[0], b.Pods[0]
	var under, pod []float64
	for round := 0; round < 2; round++ {
		u, err := l.Throughput(ctx, a.Netns, b.Netns, b.UnderlayIP, 2*time.Second)
		if err != nil {
			return err
		}
		p, err := l.Throughput(ctx, pa.Netns, pb.Netns, pb.IP, 2*time.Second)
		if err != nil {
			return err
		}
		under, pod = append(under, u), append(pod, p)
	}
	mu, mp := median(under), median(pod)
	path, err := l.PathTo(a.Name, b.Name)
	if err != nil {
		return err
	}
	fmt.Printf("throughput (iperf3 TCP, 2 interleaved runs of 2 s each, median):\n")
	fmt.Printf("  %-36s %6.2f Gbit/s\n", fmt.Sprintf("node %s → node %s (underlay)", a.Name, b.Name), mu/1e9)
	fmt.Printf("  %-36s %6.2f Gbit/s = %.2f of underlay\n", fmt.Sprintf("pod %s → pod %s (%s)", pa.Name, pb.Name, path), mp/1e9, mp/mu)
	return nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func nameFlag(sub string, args []string) (string, []string, error) {
	fs := flag.NewFlagSet("weft lab "+sub, flag.ContinueOnError)
	name := fs.String("name", "weft", "lab name")
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	return *name, fs.Args(), lab.CheckName(*name)
}

func labStatus(args []string) error {
	name, rest, err := nameFlag("status", args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %v", rest)
	}
	l, err := lab.Open(name, nil)
	if err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	l.PrintStatus(ctx, os.Stdout)
	return nil
}

func labDown(args []string) error {
	name, rest, err := nameFlag("down", args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %v", rest)
	}
	if !lab.Exists(name) {
		fmt.Printf("no lab %q here: nothing to remove\n", name)
		return nil
	}
	if err := lab.Down(name); err != nil {
		return err
	}
	fmt.Printf("lab %s removed\n", name)
	return nil
}

// labExec runs a command in a lab namespace through nsenter, which keeps
// the mount namespace (so the command sees what the lab sees under /run).
func labExec(args []string) error {
	name, rest, err := nameFlag("exec", args)
	if err != nil {
		return err
	}
	if len(rest) < 2 {
		return errors.New("usage: weft lab exec [--name NAME] NODE|POD|ul -- CMD [ARGS...]")
	}
	target, cmdArgs := rest[0], rest[1:]
	if cmdArgs[0] == "--" {
		cmdArgs = cmdArgs[1:]
	}
	if len(cmdArgs) == 0 {
		return errors.New("usage: weft lab exec [--name NAME] NODE|POD|ul -- CMD [ARGS...]")
	}
	l, err := lab.Open(name, nil)
	if err != nil {
		return err
	}
	nsName, env := "", os.Environ()
	if n, err := l.Node(target); err == nil {
		nsName = n.Netns
		// `weft status`, `weft peers` and friends then find this
		// node's agent, whose run dir is the lab's, not /run/weft.
		env = append(env, "WEFT_RUN_DIR="+n.RunDir())
	} else if p, err := l.Pod(target); err == nil {
		nsName = p.Netns
	} else if target == "ul" || target == "underlay" {
		nsName = l.Underlay
	} else {
		return fmt.Errorf("lab %s has no node or pod %q", name, target)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter not found (Debian's util-linux): %w", err)
	}
	argv := append([]string{"nsenter", "--net=" + netns.Path(nsName), "--"}, cmdArgs...)
	return syscall.Exec(nsenter, argv, env)
}

func runLabDatastore(args []string) error {
	fs := flag.NewFlagSet("weft-lab "+lab.DatastoreCommand, flag.ContinueOnError)
	listen := fs.String("listen", "", "client address IP:PORT (the underlay bridge's)")
	dataDir := fs.String("data-dir", "", "etcd data directory")
	pkiDir := fs.String("pki-dir", "", "directory with ca.pem, server.pem and server-key.pem")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return lab.RunEtcd(*listen, *dataDir, *pkiDir)
}
