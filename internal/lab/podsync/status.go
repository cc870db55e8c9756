package podsync

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/internal/lab"
)

// readyConditions are the conditions kubelet sets true on a running pod
// whose containers are ready.
var readyConditions = []corev1.PodConditionType{
	corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady,
	corev1.ContainersReady, corev1.PodScheduled,
}

// writeRunning reports p as kubelet reports a running, ready pod: phase
// Running, its address and its node's, every condition true and every
// container running. A status that says so already is left alone.
func (s *syncer) writeRunning(ctx context.Context, p *corev1.Pod, n *lab.NodeState, ip netip.Addr) {
	if isRunning(p, n, ip) {
		return
	}
	now := metav1.Now()
	q := p.DeepCopy()
	st := &q.Status
	st.Phase = corev1.PodRunning
	st.Reason, st.Message = "", ""
	st.HostIP = n.UnderlayIP.String()
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	st.PodIP = ip.String()
	st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	for _, t := range readyConditions {
		setCondition(st, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	st.InitContainerStatuses = nil
	for _, c := range p.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, ContainerID: "lab://" + string(p.UID) + "-" + c.Name,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: now, FinishedAt: now}},
		})
	}
	st.ContainerStatuses = nil
	started := true
	for _, c := range p.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: &started, ContainerID: "lab://" + string(p.UID) + "-" + c.Name,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, err := s.cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, q, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		// A conflict means a newer Pod is on its way to the informer: the
		// next pass writes over that one.
		syncLogf("pod %s/%s: status: %v", p.Namespace, p.Name, err)
	}
}

func isRunning(p *corev1.Pod, n *lab.NodeState, ip netip.Addr) bool {
	st := &p.Status
	if st.Phase != corev1.PodRunning || st.PodIP != ip.String() || st.HostIP != n.UnderlayIP.String() ||
		len(st.ContainerStatuses) != len(p.Spec.Containers) {
		return false
	}
	for _, t := range readyConditions {
		if c := findCondition(st, t); c == nil || c.Status != corev1.ConditionTrue {
			return false
		}
	}
	return true
}

func findCondition(st *corev1.PodStatus, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setCondition sets c, keeping the transition time of a condition whose
// status does not change.
func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	if old := findCondition(st, c.Type); old != nil {
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		*old = c
		return
	}
	st.Conditions = append(st.Conditions, c)
}

// fail tells the pod's owner why the lab could not realise it, as kubelet
// does when a sandbox cannot be made: a Warning event on the Pod (once per
// distinct reason; the pod stays Pending and is retried).
func (s *syncer) fail(ctx context.Context, p *corev1.Pod, n *lab.NodeState, err error) {
	msg := fmt.Sprintf("lab node %s cannot run pod: %v", n.Name, err)
	if s.failed[p.UID] == msg {
		return
	}
	s.failed[p.UID] = msg
	syncLogf("pod %s/%s: %s", p.Namespace, p.Name, msg)
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      p.Name + "." + strconv.FormatInt(time.Now().UnixNano(), 16),
			Namespace: p.Namespace,
		},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
		},
		Reason: "FailedCreatePodSandBox", Message: msg, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "weft-lab", Host: n.Name},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "weft.dev/lab", ReportingInstance: n.Name,
	}
	if _, err := s.cs.CoreV1().Events(p.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		syncLogf("pod %s/%s: event: %v", p.Namespace, p.Name, err)
	}
}

// finishDelete removes a Pod being deleted once nothing of it is left on
// its node, as kubelet does when its containers have stopped.
func (s *syncer) finishDelete(ctx context.Context, p *corev1.Pod) {
	zero := int64(0)
	err := s.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		syncLogf("pod %s/%s: delete: %v", p.Namespace, p.Name, err)
	}
}
