package clientgo

// Helpers of the write cases: tenants who may create namespaces or belong to an Account (RBAC and Accounts made by
// the admin, deleted when the test ends), spaces made through the server and cleaned up by the admin, creates retried
// while kube-apiserver and the server do not yet see a fresh grant, and watches read up to an event.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

var accountsGVR = schema.GroupVersionResource{Group: "config.tenancy.loft.sh", Version: "v1", Resource: "accounts"}

const (
	// How long the namespace controller may take to remove a deleted space's namespace.
	deletion = 90 * time.Second
	// The annotation the server keeps on a namespace while it is still making the space.
	creatingMark = "tenancy.loft.sh/creating"
)

// allowNamespaceCreate gives tn `create namespaces` (what lets a caller with no Account create spaces) through a
// ClusterRole and a ClusterRoleBinding of its own, both deleted when the test ends.
func (e *env) allowNamespaceCreate(t *testing.T, tn *tenant) {
	t.Helper()
	ctx := ctxFor(t)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name("ns-creator")},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"create"}}},
	}
	if _, err := e.kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterRole %s: %v", role.Name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{tn.UserSubject()},
	}
	if _, err := e.kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ClusterRoleBinding %s: %v", binding.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.kube.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil &&
			!apierrors.IsNotFound(err) {
			t.Logf("cleanup: deleting ClusterRoleBinding %s: %v", binding.Name, err)
		}
		if err := e.kube.RbacV1().ClusterRoles().Delete(ctx, role.Name, metav1.DeleteOptions{}); err != nil &&
			!apierrors.IsNotFound(err) {
			t.Logf("cleanup: deleting ClusterRole %s: %v", role.Name, err)
		}
	})
}

// account creates an Account (config.tenancy.loft.sh/v1) whose only subject is tn's group, with the given space
// limit and no templates named (so the default SpaceTemplate applies); returns its name. Deleted when the test ends
// (after the spaces, which are cleaned up later-registered-first).
func (e *env) account(t *testing.T, tn *tenant, limit int64) string {
	t.Helper()
	accountName := name("acct")
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": accountsGVR.GroupVersion().String(),
		"kind":       "Account",
		"metadata":   map[string]any{"name": accountName},
		"spec": map[string]any{
			"subjects": []any{map[string]any{"kind": "Group", "name": tn.Group}},
			"space":    map[string]any{"limit": limit},
		},
	}}
	accounts := dynamicClient(t, e.admin).Resource(accountsGVR)
	if _, err := accounts.Create(ctxFor(t), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Account %s: %v", accountName, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := accounts.Delete(ctx, accountName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Logf("cleanup: deleting Account %s: %v", accountName, err)
		}
	})
	return accountName
}

// cleanupSpace deletes the namespace of a space the test made through the server, with the admin, when the test ends.
func (e *env) cleanupSpace(t *testing.T, spaceName string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := e.kube.CoreV1().Namespaces().Delete(ctx, spaceName, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("cleanup: deleting namespace %s: %v", spaceName, err)
		}
	})
}

// namespaceNow is the admin's read of a namespace, straight from kube-apiserver; fails the test if it is not there.
func (e *env) namespaceNow(t *testing.T, ctx context.Context, nsName string) *corev1.Namespace {
	t.Helper()
	ns, err := e.kube.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("admin get namespace %s: %v", nsName, err)
	}
	return ns
}

// untilAuthorized calls write until it answers anything but Forbidden: a fresh ClusterRoleBinding or Account takes a
// moment to reach kube-apiserver's authorizer and the server (whose SubjectAccessReviews are cached 10 s). Returns
// the last answer, which is Forbidden only if the grant was not seen within propagation.
func untilAuthorized[T any](t *testing.T, write func() (T, error)) (T, error) {
	t.Helper()
	deadline := time.Now().Add(propagation)
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		out, err := write()
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ticker.C:
		case <-t.Context().Done():
			return out, err
		}
	}
}

// newSpace is an unstructured Space named spaceName with the given labels (none if nil).
func newSpace(spaceName string, labels map[string]string) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion(tenancyGV.String())
	obj.SetKind(spaceGVK.Kind)
	obj.SetName(spaceName)
	if labels != nil {
		obj.SetLabels(labels)
	}
	return obj
}

// hasLabels reports whether got holds every key of want with want's value.
func hasLabels(got, want map[string]string) bool {
	for k, v := range want {
		if value, ok := got[k]; !ok || value != v {
			return false
		}
	}
	return true
}

// withLabels is a copy of labels with the given changes; an empty value removes the key.
func withLabels(labels map[string]string, changes map[string]string) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// phaseOf is an unstructured space's status.phase.
func phaseOf(obj *unstructured.Unstructured) string {
	phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
	return phase
}

// causeFields lists the fields of an Invalid error's causes.
func causeFields(err error) []string {
	var fields []string
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			fields = append(fields, c.Field)
		}
	}
	return fields
}

// eventSummary renders an unstructured watch event for failure messages.
func eventSummary(ev watch.Event) string {
	if obj, ok := ev.Object.(*unstructured.Unstructured); ok {
		return fmt.Sprintf("%s %s (rv %s, deletionTimestamp %v, phase %q)", ev.Type, obj.GetName(),
			obj.GetResourceVersion(), obj.GetDeletionTimestamp(), phaseOf(obj))
	}
	if s, ok := ev.Object.(*metav1.Status); ok {
		return fmt.Sprintf("%s Status %d %s: %s", ev.Type, s.Code, s.Reason, s.Message)
	}
	return fmt.Sprintf("%s %T", ev.Type, ev.Object)
}

// readUntil reads w's events until done returns true for one, and returns every event read; fails the test if the
// watch ends or timeout passes first.
func readUntil(t *testing.T, w watch.Interface, timeout time.Duration, what string, done func(watch.Event) bool) []watch.Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var seen []watch.Event
	summary := func() string {
		var parts []string
		for _, ev := range seen {
			parts = append(parts, eventSummary(ev))
		}
		return "[" + strings.Join(parts, "; ") + "]"
	}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("%s: the watch ended first; events: %s", what, summary())
			}
			seen = append(seen, ev)
			if ev.Type == watch.Error {
				t.Fatalf("%s: watch error; events: %s", what, summary())
			}
			if done(ev) {
				return seen
			}
		case <-timer.C:
			t.Fatalf("%s: not within %v; events: %s", what, timeout, summary())
		case <-t.Context().Done():
			t.Fatalf("%s: test ended while waiting; events: %s", what, summary())
		}
	}
}
