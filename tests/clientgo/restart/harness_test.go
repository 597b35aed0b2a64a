package restart

// What the restart case needs from the environment, kept in this package so that it runs on its own (tests/run.sh
// runs it after every other client-go package, never beside them): the admin client, impersonated tenants, uniquely
// named namespaces and RoleBindings, admin writes retried while kube-apiserver is down, a journal of timed lines, and
// the restart script. The request recorder is e2eenv's.

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

var spacesGVR = schema.GroupVersionResource{Group: "tenancy.loft.sh", Version: "v1", Resource: "spaces"}

// env is the environment named by TENANCY_E2E_ENV (written by tests/env/up.sh).
type env struct {
	vars  map[string]string
	admin *rest.Config
	kube  kubernetes.Interface
	// restartScript is tests/controlplane/restart.sh, absolute.
	restartScript string
}

var (
	// Distinguishes this run's objects from any other run's on the same control plane.
	runID = fmt.Sprintf("%04x", rand.Uint32()&0xffff)
	seq   atomic.Uint32
)

func testEnv(t *testing.T) *env {
	t.Helper()
	loaded, err := e2eenv.Load("e.g. `bash tests/env/up.sh /tmp/rs-env` then TENANCY_E2E_ENV=/tmp/rs-env/env go test ./restart; "+
		"tests/run.sh sets it", e2eenv.Client{QPS: 200, Burst: 400, UserAgent: "tenancy-clientgo-restart-tests"},
		"STATE_DIR", "LOG_DIR")
	if err != nil {
		t.Fatal(err)
	}
	vars, admin, kube := loaded.Vars, loaded.Admin, loaded.Kube
	// The test runs in its package's directory, tests/clientgo/restart.
	script, err := filepath.Abs(filepath.Join("..", "..", "controlplane", "restart.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("the restart script: %v", err)
	}
	return &env{vars: vars, admin: admin, kube: kube, restartScript: script}
}

// name returns a name unique to this run and call: `rs-<hint>-<run>-<n>`.
func name(hint string) string {
	return fmt.Sprintf("rs-%s-%s-%d", hint, runID, seq.Add(1))
}

// tenant is a user of its own with a group of its own, reached through the admin's impersonation.
type tenant = e2eenv.Tenant

func (e *env) newTenant(hint string) *tenant {
	return e2eenv.NewTenant(name(hint+"-u"), e.admin)
}

// deleteNamespaceWhenDone deletes namespace ns when the test ends (retrying for a while: kube-apiserver may just be
// coming back), ignoring one that was never made.
func (e *env) deleteNamespaceWhenDone(t *testing.T, ns string) {
	t.Cleanup(func() {
		err := retry(context.Background(), 60*time.Second, func(ctx context.Context) error {
			err := e.kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		})
		if err != nil {
			t.Logf("cleanup: deleting namespace %s: %v", ns, err)
		}
	})
}

func (e *env) createNamespace(ctx context.Context, ns string) error {
	_, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		metav1.CreateOptions{})
	return err
}

func viewBinding(ns, binding string, subject rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: binding, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{subject},
	}
}

func (e *env) createBinding(ctx context.Context, ns, binding string, subject rbacv1.Subject) error {
	_, err := e.kube.RbacV1().RoleBindings(ns).Create(ctx, viewBinding(ns, binding, subject), metav1.CreateOptions{})
	return err
}

// namespaceWithGrant makes a unique namespace (deleted when the test ends) with a RoleBinding of ClusterRole view to
// subject in it; returns the namespace's and the binding's names.
func (e *env) namespaceWithGrant(t *testing.T, ctx context.Context, hint string, subject rbacv1.Subject) (string, string) {
	t.Helper()
	ns, binding := name(hint), name("view")
	e.deleteNamespaceWhenDone(t, ns)
	if err := e.createNamespace(ctx, ns); err != nil {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	if err := e.createBinding(ctx, ns, binding, subject); err != nil {
		t.Fatalf("creating RoleBinding %s/%s: %v", ns, binding, err)
	}
	return ns, binding
}

// retry calls write (each attempt with its own 5 s deadline) until it succeeds or timeout passes; returns the last
// error then. For admin writes while kube-apiserver is down or starting.
func retry(ctx context.Context, timeout time.Duration, write func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		err := write(attemptCtx)
		cancelAttempt()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not accepted within %v: %w", timeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// journal is a list of timestamped lines written from several goroutines.
type journal struct {
	clock e2eenv.Clock
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, fmt.Sprintf("+%v ", j.clock.Since())+fmt.Sprintf(format, args...))
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.lines) == 0 {
		return " (none)"
	}
	return "\n  " + strings.Join(j.lines, "\n  ")
}

// controlPlaneScript runs restart.sh with args in a process group of its own (so that a kube-apiserver it starts
// outlives an interrupted test), its output line by line to onLine. It returns at once; done is closed, and err set,
// when the script has exited.
type controlPlaneScript struct {
	done chan struct{}
	err  error
}

func (e *env) runRestartScript(onLine func(string), args ...string) (*controlPlaneScript, error) {
	cmd := exec.Command("bash", append([]string{e.restartScript, e.vars["STATE_DIR"], "kube-apiserver"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &controlPlaneScript{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		scanner := bufio.NewScanner(out)
		for scanner.Scan() {
			onLine(scanner.Text())
		}
		s.err = cmd.Wait()
	}()
	return s, nil
}

// ansi matches the colour codes of the server's log.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// serverLogFrom returns the tenancy-apiserver log from byte offset on (at most its last maxLines lines).
func (e *env) serverLogFrom(offset int64, maxLines int) string {
	data, err := os.ReadFile(filepath.Join(e.vars["LOG_DIR"], "tenancy-apiserver.log"))
	if err != nil {
		return err.Error()
	}
	if offset > int64(len(data)) {
		offset = 0
	}
	lines := strings.Split(strings.TrimRight(ansi.ReplaceAllString(string(data[offset:]), ""), "\n"), "\n")
	if len(lines) > maxLines {
		lines = append([]string{fmt.Sprintf("(%d earlier lines left out)", len(lines)-maxLines)}, lines[len(lines)-maxLines:]...)
	}
	return "\n  " + strings.Join(lines, "\n  ")
}

func (e *env) serverLogSize() int64 {
	info, err := os.Stat(filepath.Join(e.vars["LOG_DIR"], "tenancy-apiserver.log"))
	if err != nil {
		return 0
	}
	return info.Size()
}

// serverLogSummary counts the WARN and ERROR lines of the tenancy-apiserver log from byte offset on by their text
// without timestamp (cut to 200 characters), first seen first.
func (e *env) serverLogSummary(offset int64) string {
	data, err := os.ReadFile(filepath.Join(e.vars["LOG_DIR"], "tenancy-apiserver.log"))
	if err != nil {
		return err.Error()
	}
	if offset > int64(len(data)) {
		offset = 0
	}
	var order []string
	counts := map[string]int{}
	total := 0
	for line := range strings.Lines(ansi.ReplaceAllString(string(data[offset:]), "")) {
		total++
		_, text, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(strings.TrimSpace(text), "WARN") && !strings.HasPrefix(strings.TrimSpace(text), "ERROR") {
			continue
		}
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		if counts[text] == 0 {
			order = append(order, text)
		}
		counts[text]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, " %d lines", total)
	for _, text := range order {
		fmt.Fprintf(&b, "\n  %dx %s", counts[text], text)
	}
	return b.String()
}
