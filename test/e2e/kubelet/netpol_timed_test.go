package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/internal/labimage"
)

// npExec is a netcheck running in a pod through `kubectl exec`, its
// output read line by line.
type npExec struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func (np *npCluster) start(t *testing.T, src string, stdin bool, args ...string) *npExec {
	t.Helper()
	kargs := []string{"exec", "-n", src[:1], np.pod[src]}
	if stdin {
		kargs = append(kargs, "-i")
	}
	cmd, err := np.l.Kubectl(append(append(kargs, "--", "/netcheck"), args...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := &npExec{cmd: cmd, lines: make(chan string, 16)}
	if stdin {
		if e.stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
		close(e.lines)
	}()
	// Ended and reaped whatever happens; every netcheck mode is bounded.
	t.Cleanup(func() {
		if e.stdin != nil {
			e.stdin.Close()
		}
		e.cmd.Process.Kill()
		e.cmd.Wait()
	})
	return e
}

// next is the next line of output, failing the test after wait.
func (e *npExec) next(t *testing.T, what string, wait time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-e.lines:
		if !ok {
			t.Fatalf("%s: netcheck ended without a line", what)
		}
		return line
	case <-time.After(wait):
		t.Fatalf("%s: no line within %s", what, wait)
	}
	return ""
}

// stamp reads the Unix nanosecond timestamp after key= (or after the
// field named key) in line.
func stamp(t *testing.T, line, key string) time.Time {
	t.Helper()
	f := strings.Fields(line)
	for i, s := range f {
		var v string
		if strings.HasPrefix(s, key+"=") {
			v = strings.TrimPrefix(s, key+"=")
		} else if s == key && i+1 < len(f) {
			v = f[i+1]
		} else {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%q: %s is not a timestamp", line, key)
		}
		return time.Unix(0, n)
	}
	t.Fatalf("%q has no %s", line, key)
	return time.Time{}
}

// newPodUnderDefaultDeny creates pod x/new while x denies all ingress but
// from y/a, and checks it from its first moments: the pods denied (y/b on
// another node, y/c on its own; see npOrder's placement) never get an
// answer; y/a, allowed, does (so the checks could see one).
func newPodUnderDefaultDeny(t *testing.T, np *npCluster) {
	ctx := context.Background()
	cs := np.cs
	for _, js := range []string{
		npPolicy("x", "deny", `{"podSelector":{}}`),
		npPolicy("x", "new-from-ya", `{"podSelector":{"matchLabels":{"pod":"new"}},
			"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"ns":"y"}},"podSelector":{"matchLabels":{"pod":"a"}}}]}]}`),
	} {
		p := decodePolicy(t, js)
		if _, err := cs.NetworkingV1().NetworkPolicies("x").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := cs.NetworkingV1().NetworkPolicies("x").Delete(context.Background(), p.Name, metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete policy x/%s: %v", p.Name, err)
			}
		})
	}
	// The agents hold the policies before the pod exists.
	np.expect(t, "default deny in x", npWait, []npProbe{{80, "tcp", `
xa .XX......
xb X.X......
xc XX.......
ya XXX......
yb XXX......
yc XXX......
za XXX......
zb XXX......
zc XXX......`}})

	// Each poller runs before the pod exists and starts checking the
	// moment it reads the pod's address.
	sources := []string{"ya", "yb", "yc"}
	polls := map[string]*npExec{}
	for _, src := range sources {
		polls[src] = np.start(t, src, true, "poll", "--for", "10s", "--every", "20ms", "--timeout", "200ms")
		if line := polls[src].next(t, "poller in "+src, time.Minute); line != "ready" {
			t.Fatalf("poller in %s: %q", src, line)
		}
	}
	// The pod goes to y/c's node: one denied pair crosses nodes, one not.
	if np.node["yb"] == np.node["yc"] {
		t.Fatalf("y/b and y/c are both on %s", np.node["yb"])
	}
	created := time.Now()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: "x", Labels: map[string]string{"pod": "new"}},
		Spec: corev1.PodSpec{
			NodeName:                      np.node["yc"],
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "netcheck", Image: labimage.NetcheckImage, ImagePullPolicy: corev1.PullNever,
				Args:           []string{"serve", "80"},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}, PeriodSeconds: 1},
			}},
		},
	}
	if _, err := cs.CoreV1().Pods("x").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cs.CoreV1().Pods("x").Delete(context.Background(), "new", metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete pod x/new: %v", err)
		}
	})
	var ip string
	deadline := time.Now().Add(2 * time.Minute)
	for ip == "" {
		p, err := cs.CoreV1().Pods("x").Get(ctx, "new", metav1.GetOptions{})
		if err == nil {
			ip = p.Status.PodIP
		}
		if ip == "" {
			if time.Now().After(deadline) {
				t.Fatalf("pod x/new has no address after 2m")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	seen := time.Now()
	for _, src := range sources {
		fmt.Fprintf(polls[src].stdin, "%s:80/tcp\n", ip)
		polls[src].stdin.Close()
	}
	t.Logf("x/new on %s: created → address %s in the API: %s", np.node["yc"], ip, seen.Sub(created).Round(time.Millisecond))
	for _, src := range sources {
		var first, began time.Time
		done := ""
		for done == "" {
			line := polls[src].next(t, "poller in "+src, time.Minute)
			switch f := strings.Fields(line); f[0] {
			case "target":
				began = stamp(t, line, ip+":80/tcp")
			case "first-ok":
				first = stamp(t, line, "first-ok")
			case "done":
				done = line
			}
		}
		if src == "ya" {
			if first.IsZero() {
				t.Errorf("y/a, allowed, never got an answer from x/new in 10 s (%s)", done)
			} else {
				t.Logf("y/a (allowed): first answer %s after its checks began (address seen → checks began %s); %s",
					first.Sub(began).Round(time.Millisecond), began.Sub(seen).Round(time.Millisecond), done)
			}
			continue
		}
		if !first.IsZero() || !strings.HasSuffix(done, " ok=0") {
			t.Errorf("%s, denied, got an answer from the new pod x/new %s after its checks began: %s",
				src, first.Sub(began).Round(time.Millisecond), done)
		} else {
			t.Logf("%s (denied): no answer from the address's first appearance on (checks began %s after it): %s",
				src, began.Sub(seen).Round(time.Millisecond), done)
		}
	}
}

// openConnectionCut holds TCP connections to x/a, from y/a (other node)
// and y/b (same node), and checks that each stops echoing once a policy
// denies it.
func openConnectionCut(t *testing.T, np *npCluster) {
	ctx := context.Background()
	holds := map[string]*npExec{}
	sources := []string{"ya", "yb"}
	for _, src := range sources {
		holds[src] = np.start(t, src, false, "hold", "--for", "60s", "--every", "100ms", "--wait", "500ms", np.ip["xa"]+":80")
		if line := holds[src].next(t, "hold from "+src, time.Minute); !strings.HasPrefix(line, "connected ") {
			t.Fatalf("hold from %s: %q", src, line)
		}
	}
	p := decodePolicy(t, npPolicy("x", "deny", `{"podSelector":{}}`))
	applied := time.Now()
	if _, err := np.cs.NetworkingV1().NetworkPolicies("x").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := np.cs.NetworkingV1().NetworkPolicies("x").Delete(context.Background(), "deny", metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete policy x/deny: %v", err)
		}
	})
	for _, src := range sources {
		line := holds[src].next(t, "hold from "+src, time.Minute)
		if !strings.HasPrefix(line, "echo-stopped ") {
			t.Errorf("connection %s → x/a went on after the deny policy: %q", src, line)
			continue
		}
		t.Logf("connection %s (%s) → x/a (%s): last echo %s after the policy's create call, first unanswered byte sent %s after it (%s)",
			src, np.node[src], np.node["xa"], stamp(t, line, "last-echo").Sub(applied).Round(time.Millisecond),
			stamp(t, line, "sent").Sub(applied).Round(time.Millisecond), line)
	}
}
