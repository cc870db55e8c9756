package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/weftnet/weft/internal/lab/controlplane"
	"github.com/weftnet/weft/internal/netns"
)

// Kubeconfig is the lab's admin kubeconfig, for labs whose datastore is
// Kubernetes. Its server is the API server's address in the underlay
// namespace, which the host's own namespace has no route to: use it from
// inside the lab (Kubectl does).
func (l *Lab) Kubeconfig() (string, error) {
	k, ok := l.ds.(*kubeDatastore)
	if !ok {
		return "", fmt.Errorf("lab %s's datastore is not Kubernetes (bring it up with --datastore kubernetes or --kubelet)", l.Name)
	}
	return k.kubeconfig(), nil
}

// Kubectl is kubectl with the lab's admin credentials, run inside the
// underlay namespace where the API server listens (nsenter keeps the
// mount namespace, so paths such as `-f deploy/weft.yaml` resolve as the
// caller sees them).
func (l *Lab) Kubectl(args ...string) (*exec.Cmd, error) {
	kc, err := l.Kubeconfig()
	if err != nil {
		return nil, err
	}
	kubectl := filepath.Join(controlplane.CacheDir(), controlplane.Kubectl)
	if _, err := os.Stat(kubectl); err != nil {
		return nil, fmt.Errorf("kubectl is not built: %w (hack/kube/build.sh builds it)", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("nsenter not found (Debian's util-linux): %w", err)
	}
	argv := append([]string{"--net=" + netns.Path(l.Underlay), "--", kubectl, "--kubeconfig=" + kc}, args...)
	return exec.Command(nsenter, argv...), nil
}
