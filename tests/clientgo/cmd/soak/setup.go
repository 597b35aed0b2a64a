package main

// The soak's world, made with the admin and removed at the end: namespaces with RoleBindings granting ClusterRole
// view to viewer users (and to their groups), an Account whose members (the creators) make and delete spaces, and a
// binding of tenancy-space-admin to the creators in the first namespaces, which they label during the run so that
// the viewers' watches see MODIFIED events.
//
// Who sees what (i = viewer index, j = namespace index), fixed for the whole run so that every list can be checked:
//   - viewer i (user soak-<run>-v<i>, group soak-<run>-g<i%5>) sees namespace j when (i+j)%10 == 0 (a RoleBinding
//     subject of its own), or when j%7 == 0 and j%5 == i%5 (its group);
//   - creators (group soak-<run>-creators) see namespaces j < labelable, and the account's own spaces.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

const (
	runLabel     = "soak.tenancy.loft.sh/run"
	tierLabel    = "soak.tenancy.loft.sh/tier"
	tickLabel    = "soak.tenancy.loft.sh/tick"
	warmupLabel  = "soak.tenancy.loft.sh/warmup"
	accountLabel = "tenancy.loft.sh/account"
	// The server's mark on a space it has not finished making.
	creatingAnnotation = "tenancy.loft.sh/creating"
	tiers              = 4
	groups             = 5
)

var accountsGVR = schema.GroupVersionResource{Group: "config.tenancy.loft.sh", Version: "v1", Resource: "accounts"}

type user struct {
	name   string
	groups []string
	http   *http.Client
	// Names of the run's namespaces the user sees (viewers: fixed; creators: the labelable ones).
	visible []string
}

type world struct {
	run        string
	namespaces []string
	tier       map[string]int
	labelable  []string
	viewers    []*user
	creators   []*user
	account    string
	creatorsGr string
}

func (w *world) nsName(j int) string { return fmt.Sprintf("soak-%s-%d", w.run, j) }

// isRun tells the run's own namespaces (and the spaces its creators make) from anything else on the cluster.
func (w *world) isRun(name string) bool { return strings.HasPrefix(name, "soak-"+w.run+"-") }

func viewerSees(i, j int) bool { return (i+j)%10 == 0 || (j%7 == 0 && j%5 == i%5) }

func newWorld(run string, namespaces, viewers, creators, labelable int) *world {
	w := &world{run: run, tier: map[string]int{}, account: "soak-" + run, creatorsGr: "soak-" + run + "-creators"}
	for j := range namespaces {
		name := w.nsName(j)
		w.namespaces = append(w.namespaces, name)
		w.tier[name] = j % tiers
		if j < labelable {
			w.labelable = append(w.labelable, name)
		}
	}
	for i := range viewers {
		u := &user{name: fmt.Sprintf("soak-%s-v%d", run, i), groups: []string{fmt.Sprintf("soak-%s-g%d", run, i%groups)}}
		for j := range namespaces {
			if viewerSees(i, j) {
				u.visible = append(u.visible, w.nsName(j))
			}
		}
		slices.Sort(u.visible)
		w.viewers = append(w.viewers, u)
	}
	for i := range creators {
		u := &user{name: fmt.Sprintf("soak-%s-c%d", run, i), groups: []string{w.creatorsGr}, visible: slices.Clone(w.labelable)}
		slices.Sort(u.visible)
		w.creators = append(w.creators, u)
	}
	return w
}

// parallel runs fn(0..n-1) on at most `workers` goroutines and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func (w *world) create(ctx context.Context, e *env) error {
	kube := e.kube
	err := parallel(len(w.namespaces), 8, func(j int) error {
		name := w.namespaces[j]
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			runLabel: w.run, tierLabel: fmt.Sprintf("t%d", w.tier[name]),
		}}}
		if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
		var subjects []rbacv1.Subject
		for i, v := range w.viewers {
			if (i+j)%10 == 0 {
				subjects = append(subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: v.name})
			}
		}
		if j%7 == 0 {
			subjects = append(subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind,
				Name: fmt.Sprintf("soak-%s-g%d", w.run, j%groups)})
		}
		if len(subjects) > 0 {
			rb := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "soak-view", Namespace: name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
				Subjects:   subjects,
			}
			if _, err := kube.RbacV1().RoleBindings(name).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("creating RoleBinding %s/soak-view: %w", name, err)
			}
		}
		if j < len(w.labelable) {
			rb := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "soak-owner", Namespace: name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tenancy-space-admin"},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: w.creatorsGr}},
			}
			if _, err := kube.RbacV1().RoleBindings(name).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("creating RoleBinding %s/soak-owner: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(e.admin)
	if err != nil {
		return err
	}
	account := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "config.tenancy.loft.sh/v1",
		"kind":       "Account",
		"metadata":   map[string]any{"name": w.account},
		"spec": map[string]any{
			"subjects": []any{map[string]any{"kind": "Group", "name": w.creatorsGr}},
			// High enough never to be reached: at most `workers` spaces exist at once, plus those still terminating.
			"space": map[string]any{"limit": int64(1000), "templates": []any{}},
		},
	}}
	if _, err := dyn.Resource(accountsGVR).Create(ctx, account, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Account %s: %w", w.account, err)
	}
	return nil
}

// destroy removes everything the run made; errors are reported, not fatal. Namespaces are deleted, not waited for.
func (w *world) destroy(e *env) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu       sync.Mutex
		problems []string
	)
	complain := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	names := slices.Clone(w.namespaces)
	// The account's spaces still there (a create whose delete never ran, or one made in the last instant).
	if list, err := e.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: accountLabel + "=" + w.account}); err != nil {
		complain("listing the account's namespaces: %v", err)
	} else {
		for _, ns := range list.Items {
			if !slices.Contains(names, ns.Name) {
				names = append(names, ns.Name)
			}
		}
	}
	_ = parallel(len(names), 8, func(i int) error {
		err := e.kube.CoreV1().Namespaces().Delete(ctx, names[i], metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			complain("deleting namespace %s: %v", names[i], err)
		}
		return nil
	})
	if dyn, err := dynamic.NewForConfig(e.admin); err != nil {
		complain("%v", err)
	} else if err := dyn.Resource(accountsGVR).Delete(ctx, w.account, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		complain("deleting Account %s: %v", w.account, err)
	}
	return problems
}

// warmUp makes n namespace changes with the admin, straight to kube-apiserver (a label on the run's namespaces, in
// turn): each is an entry of the server's change log, which keeps the last 10,000. Filled before the load, the log
// stays the same size during it, so its growth is not mistaken for a leak.
func (w *world) warmUp(ctx context.Context, e *env, n int) error {
	return parallel(n, 16, func(i int) error {
		name := w.namespaces[i%len(w.namespaces)]
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:"%d"}}}`, warmupLabel, i)
		_, err := e.kube.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return fmt.Errorf("labelling namespace %s: %w", name, err)
		}
		return nil
	})
}

// waitForDeletions waits until none of the account's namespaces is left (deleted spaces stay Terminating until
// kube-controller-manager has emptied them); it returns how many are left.
func (w *world) waitForDeletions(ctx context.Context, e *env, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		list, err := e.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: accountLabel + "=" + w.account})
		if err == nil && len(list.Items) == 0 {
			return 0, nil
		}
		left := -1
		if err == nil {
			left = len(list.Items)
			err = fmt.Errorf("still there")
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return left, err
		}
		time.Sleep(time.Second)
	}
}
