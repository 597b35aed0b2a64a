package clientgo

// The shared environment of a run and the helpers every case uses: the admin client, impersonated tenants, uniquely
// named namespaces and RoleBindings (deleted when the test ends), deadlines. The request recorder is e2eenv's.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

// The resource under test.
var (
	tenancyGV = schema.GroupVersion{Group: "tenancy.loft.sh", Version: "v1"}
	spacesGVR = tenancyGV.WithResource("spaces")
	spaceGVK  = tenancyGV.WithKind("Space")
)

const (
	// How long a grant or a revocation may take to show (the server learns RBAC changes from its watches).
	propagation = 30 * time.Second
	// The deadline of one whole test case.
	caseTimeout = 2 * time.Minute
	// The label that names a space's account.
	accountLabel = "tenancy.loft.sh/account"
)

// env is the environment named by TENANCY_E2E_ENV (written by tests/env/up.sh).
type env struct {
	vars  map[string]string
	admin *rest.Config
	kube  kubernetes.Interface
}

var (
	envOnce   sync.Once
	sharedEnv *env
	envErr    error
	// Distinguishes this run's objects from any other run's on the same control plane.
	runID = fmt.Sprintf("%04x", rand.Uint32()&0xffff)
	seq   atomic.Uint32
)

// testEnv returns the run's environment, failing the test with an explanation when there is none.
func testEnv(t *testing.T) *env {
	t.Helper()
	envOnce.Do(func() { sharedEnv, envErr = loadEnv() })
	if envErr != nil {
		t.Fatalf("no test environment: %v", envErr)
	}
	return sharedEnv
}

func loadEnv() (*env, error) {
	loaded, err := e2eenv.Load("e.g. `bash tests/env/up.sh /tmp/cg-env` then TENANCY_E2E_ENV=/tmp/cg-env/env go test ./...; "+
		"tests/run.sh sets it", e2eenv.Client{QPS: 200, Burst: 400, UserAgent: "tenancy-clientgo-tests"}, "CA_CERT", "PKI_DIR")
	if err != nil {
		return nil, err
	}
	return &env{vars: loaded.Vars, admin: loaded.Admin, kube: loaded.Kube}, nil
}

// name returns a name unique to this run and call: `cg-<hint>-<run>-<n>`.
func name(hint string) string {
	return fmt.Sprintf("cg-%s-%s-%d", hint, runID, seq.Add(1))
}

// ctxFor is a context that ends with the test or after caseTimeout.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
	t.Cleanup(cancel)
	return ctx
}

// tenant is a user of its own with a group of its own, reached through the admin's impersonation.
type tenant = e2eenv.Tenant

func (e *env) newTenant(hint string) *tenant {
	return e2eenv.NewTenant(name(hint+"-u"), e.admin)
}

// namespace creates a uniquely named namespace with the admin, deleted when the test ends.
func (e *env) namespace(t *testing.T, hint string, labels map[string]string) *corev1.Namespace {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name(hint), Labels: labels}}
	created, err := e.kube.CoreV1().Namespaces().Create(ctxFor(t), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := e.kube.CoreV1().Namespaces().Delete(ctx, created.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("cleanup: deleting namespace %s: %v", created.Name, err)
		}
	})
	return created
}

// grant binds ClusterRole view in namespace ns to subject; returns the RoleBinding's name. The namespace's deletion
// removes the binding, so there is no cleanup of its own.
func (e *env) grant(t *testing.T, ns string, subject rbacv1.Subject) string {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name("view"), Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{subject},
	}
	if _, err := e.kube.RbacV1().RoleBindings(ns).Create(ctxFor(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating RoleBinding %s/%s: %v", ns, rb.Name, err)
	}
	return rb.Name
}

// revoke deletes a RoleBinding made by grant.
func (e *env) revoke(t *testing.T, ns, binding string) {
	t.Helper()
	if err := e.kube.RbacV1().RoleBindings(ns).Delete(ctxFor(t), binding, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting RoleBinding %s/%s: %v", ns, binding, err)
	}
}

// eventually polls check until it reports ok, or fails the test after timeout with what check saw last.
func eventually(t *testing.T, timeout time.Duration, what string, check func() (ok bool, seen string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		ok, seen := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last saw: %s", what, timeout, seen)
		}
		select {
		case <-ticker.C:
		case <-t.Context().Done():
			t.Fatalf("%s: test ended while waiting; last saw: %s", what, seen)
		}
	}
}
