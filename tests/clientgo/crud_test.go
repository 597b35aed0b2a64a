package clientgo

// Writes through kube-apiserver as tenants holding only the RBAC each test gives them: the dynamic client's whole
// CRUD cycle as a tenant allowed to create namespaces, writes by a tenant who may only see a space and by one who
// cannot see it, dry-run, and a typed create of every field as the member of an Account.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

// The dynamic client's CRUD cycle as a tenant whose only right beyond the defaults is `create namespaces`: create
// (201, a whole object, readable and listed at once), update (with the current resourceVersion, a stale one, none),
// merge and JSON patches, server-side apply with ownership conflicts between two field managers, strategic merge
// patch refused with 415, the server's `tenancy.loft.sh/` keys refused with 422, and delete (preconditions, the space
// Terminating, then gone). Every change is checked on the namespace through the admin.
func TestDynamicCRUD(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	ctx := ctxFor(t)
	tn := e.newTenant("crud")
	e.allowNamespaceCreate(t, tn)
	cfg := tn.Config()
	var rec e2eenv.Recorder
	rec.Record(cfg)
	spaces := dynamicClient(t, cfg).Resource(spacesGVR)
	spaceName := name("crud")
	e.cleanupSpace(t, spaceName)

	// --- create ---
	created, err := untilAuthorized(t, func() (*unstructured.Unstructured, error) {
		return spaces.Create(ctx, newSpace(spaceName, map[string]string{"env": "dev"}), metav1.CreateOptions{})
	})
	if err != nil {
		t.Fatalf("create space %s as a tenant allowed to create namespaces: %v; requests:%s", spaceName, err, rec.String())
	}
	posts := rec.Matching(func(x e2eenv.Exchange) bool { return x.Method == "POST" && x.IsSpaces() })
	if len(posts) == 0 || posts[len(posts)-1].Status != 201 {
		t.Errorf("the successful create was not answered 201; requests:%s", rec.String())
	}
	if created.GetAPIVersion() != tenancyGV.String() || created.GetKind() != "Space" || created.GetName() != spaceName ||
		created.GetUID() == "" || created.GetResourceVersion() == "" || created.GetCreationTimestamp().Time.IsZero() {
		t.Errorf("create returned an incomplete object (want apiVersion, kind, name, uid, resourceVersion, creationTimestamp): %v",
			created.Object)
	}
	if !hasLabels(created.GetLabels(), map[string]string{"env": "dev"}) || phaseOf(created) != string(corev1.NamespaceActive) {
		t.Errorf("create returned labels %v, phase %q; want env=dev, Active", created.GetLabels(), phaseOf(created))
	}
	ns := e.namespaceNow(t, ctx, spaceName)
	if ns.UID != created.GetUID() || ns.Labels["env"] != "dev" {
		t.Errorf("namespace %s: uid %s labels %v; want the space's uid %s and env=dev", ns.Name, ns.UID, ns.Labels, created.GetUID())
	}
	// The answer is the space as the create left it, not a state from the middle of it: the server's in-progress
	// mark is gone once the create answers (a client updating the returned object would otherwise send it back).
	if mark, ok := created.GetAnnotations()[creatingMark]; ok {
		t.Errorf("create answered with the server's in-progress mark %s=%q (resourceVersion %s; the namespace is now at %s "+
			"with annotations %v)", creatingMark, mark, created.GetResourceVersion(), ns.ResourceVersion, ns.Annotations)
	}
	// Read-after-create: no waiting.
	if got, err := spaces.Get(ctx, spaceName, metav1.GetOptions{}); err != nil || got.GetUID() != created.GetUID() {
		t.Errorf("get right after create: %v, %v; want the created space (uid %s)", got, err, created.GetUID())
	}
	if list, err := spaces.List(ctx, metav1.ListOptions{}); err != nil || !slices.Contains(unstructuredNames(list), spaceName) {
		t.Errorf("list right after create: %v (err %v); want it to hold %s", list, err, spaceName)
	}

	var firstUpdate *unstructured.Unstructured // the first update's answer, stale after the second
	t.Run("update with the current resourceVersion", func(t *testing.T) {
		current, err := spaces.Get(ctx, spaceName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		current.SetLabels(withLabels(current.GetLabels(), map[string]string{"env": "prod", "tier": "web"}))
		updated, err := spaces.Update(ctx, current, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("update with resourceVersion %s from a get: %v", current.GetResourceVersion(), err)
		}
		want := map[string]string{"env": "prod", "tier": "web"}
		if !hasLabels(updated.GetLabels(), want) || updated.GetResourceVersion() == current.GetResourceVersion() {
			t.Errorf("update returned labels %v, resourceVersion %s (before %s); want %v and a new resourceVersion",
				updated.GetLabels(), updated.GetResourceVersion(), current.GetResourceVersion(), want)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); !hasLabels(ns.Labels, want) {
			t.Errorf("after the update the namespace has labels %v; want %v", ns.Labels, want)
		}
		// Read-your-writes: a get right after the update shows it.
		if got, err := spaces.Get(ctx, spaceName, metav1.GetOptions{}); err != nil || !hasLabels(got.GetLabels(), want) {
			t.Errorf("get right after the update: labels %v, err %v; want %v", labelsOf(got), err, want)
		}
		firstUpdate = updated.DeepCopy()
		// The object an update returns is current: updating it again needs no get in between.
		updated.SetLabels(withLabels(updated.GetLabels(), map[string]string{"step": "chained"}))
		again, err := spaces.Update(ctx, updated, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("update with the resourceVersion %s the previous update returned: %v", updated.GetResourceVersion(), err)
		}
		if again.GetLabels()["step"] != "chained" {
			t.Errorf("the chained update returned labels %v; want step=chained", again.GetLabels())
		}
	})

	t.Run("update with a stale resourceVersion is a conflict", func(t *testing.T) {
		if firstUpdate == nil {
			t.Skip("the update case failed")
		}
		stale := firstUpdate.DeepCopy()
		stale.SetLabels(withLabels(stale.GetLabels(), map[string]string{"env": "stale"}))
		_, err := spaces.Update(ctx, stale, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			t.Fatalf("update with the resourceVersion %s of the first update, after a second: want Conflict, got %v",
				stale.GetResourceVersion(), err)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels["env"] == "stale" {
			t.Errorf("the refused update reached the namespace: labels %v", ns.Labels)
		}
	})

	// kube-apiserver checks the resourceVersion before validating against the stored object, so a stale update is a
	// 409 whatever changed meanwhile, and retry.RetryOnConflict recovers. Here the admin changes one of the server's
	// keys between the tenant's get and update.
	t.Run("a stale update is a conflict even when the server's keys changed meanwhile", func(t *testing.T) {
		before, err := spaces.Get(ctx, spaceName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		adminKey := "tenancy.loft.sh/cg-admin-mark"
		_, err = e.kube.CoreV1().Namespaces().Patch(ctx, spaceName, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"`+adminKey+`":"set"}}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("admin labels namespace %s: %v", spaceName, err)
		}
		eventually(t, propagation, "the tenant sees the admin's label", func() (bool, string) {
			got, err := spaces.Get(ctx, spaceName, metav1.GetOptions{})
			return err == nil && got.GetLabels()[adminKey] == "set", fmt.Sprintf("labels %v, err %v", labelsOf(got), err)
		})
		before.SetLabels(withLabels(before.GetLabels(), map[string]string{"env": "stale-managed"}))
		_, err = spaces.Update(ctx, before, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			t.Errorf("update with resourceVersion %s from before the admin's change: want Conflict (what kube-apiserver "+
				"answers a stale update), got %v", before.GetResourceVersion(), err)
		}
		_, err = e.kube.CoreV1().Namespaces().Patch(ctx, spaceName, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"`+adminKey+`":null}}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("admin unlabels namespace %s: %v", spaceName, err)
		}
		eventually(t, propagation, "the tenant sees the admin's label gone", func() (bool, string) {
			got, err := spaces.Get(ctx, spaceName, metav1.GetOptions{})
			_, has := labelsOf(got)[adminKey]
			return err == nil && !has, fmt.Sprintf("labels %v, err %v", labelsOf(got), err)
		})
		// The object the create answered, after all the writes since (the server's keys are as they were then).
		fromCreate := created.DeepCopy()
		fromCreate.SetLabels(withLabels(fromCreate.GetLabels(), map[string]string{"env": "stale-create"}))
		_, err = spaces.Update(ctx, fromCreate, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			t.Errorf("update of the object the create answered (resourceVersion %s, annotations %v) after later writes: "+
				"want Conflict, got %v", fromCreate.GetResourceVersion(), fromCreate.GetAnnotations(), err)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); strings.HasPrefix(ns.Labels["env"], "stale") {
			t.Errorf("a refused update reached the namespace: labels %v", ns.Labels)
		}
	})

	t.Run("update without resourceVersion is invalid", func(t *testing.T) {
		current, err := spaces.Get(ctx, spaceName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		current.SetResourceVersion("")
		current.SetLabels(withLabels(current.GetLabels(), map[string]string{"env": "no-rv"}))
		_, err = spaces.Update(ctx, current, metav1.UpdateOptions{})
		if !apierrors.IsInvalid(err) || !slices.Contains(causeFields(err), "metadata.resourceVersion") {
			t.Fatalf("update without resourceVersion: want Invalid with a metadata.resourceVersion cause, got %v (causes %q)",
				err, causeFields(err))
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels["env"] == "no-rv" {
			t.Errorf("the refused update reached the namespace: labels %v", ns.Labels)
		}
	})

	t.Run("merge patch", func(t *testing.T) {
		patched, err := spaces.Patch(ctx, spaceName, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"patched":"merge","env":null}}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("merge patch: %v", err)
		}
		if labels := patched.GetLabels(); labels["patched"] != "merge" || labels["env"] != "" || labels["tier"] != "web" {
			t.Errorf("merge patch returned labels %v; want patched=merge, no env, tier=web kept", labels)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels["patched"] != "merge" || ns.Labels["env"] != "" {
			t.Errorf("after the merge patch the namespace has labels %v; want patched=merge and no env", ns.Labels)
		}
	})

	t.Run("JSON patch", func(t *testing.T) {
		patched, err := spaces.Patch(ctx, spaceName, types.JSONPatchType,
			[]byte(`[{"op":"add","path":"/metadata/labels/jsonpatch","value":"yes"},{"op":"remove","path":"/metadata/labels/tier"}]`),
			metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("JSON patch: %v", err)
		}
		if labels := patched.GetLabels(); labels["jsonpatch"] != "yes" || labels["tier"] != "" {
			t.Errorf("JSON patch returned labels %v; want jsonpatch=yes and no tier", labels)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels["jsonpatch"] != "yes" || ns.Labels["tier"] != "" {
			t.Errorf("after the JSON patch the namespace has labels %v; want jsonpatch=yes and no tier", ns.Labels)
		}
		// A JSON patch whose test fails changes nothing.
		_, err = spaces.Patch(ctx, spaceName, types.JSONPatchType,
			[]byte(`[{"op":"test","path":"/metadata/labels/jsonpatch","value":"no"},{"op":"add","path":"/metadata/labels/failed","value":"x"}]`),
			metav1.PatchOptions{})
		if err == nil {
			t.Errorf("a JSON patch whose test op fails succeeded")
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels["failed"] != "" {
			t.Errorf("a failed JSON patch reached the namespace: labels %v", ns.Labels)
		}
	})

	t.Run("server-side apply", func(t *testing.T) {
		apply := func(manager string, force bool, labels map[string]string) (*unstructured.Unstructured, error) {
			return spaces.Apply(ctx, spaceName, newSpace(spaceName, labels),
				metav1.ApplyOptions{FieldManager: manager, Force: force})
		}
		const first, second = "cg-apply-first", "cg-apply-second"
		mine := map[string]string{"applied": "first", "contested": "first"}
		applied, err := apply(first, false, mine)
		if err != nil {
			t.Fatalf("apply as %s: %v", first, err)
		}
		if !hasLabels(applied.GetLabels(), mine) || applied.GetLabels()["jsonpatch"] != "yes" {
			t.Errorf("apply returned labels %v; want %v and the other managers' labels kept", applied.GetLabels(), mine)
		}
		// The same configuration again: nothing to change.
		again, err := apply(first, false, mine)
		if err != nil {
			t.Fatalf("second apply as %s: %v", first, err)
		}
		if !hasLabels(again.GetLabels(), mine) || again.GetResourceVersion() != applied.GetResourceVersion() {
			t.Errorf("re-applying the same configuration: labels %v, resourceVersion %s (was %s); want no change",
				again.GetLabels(), again.GetResourceVersion(), applied.GetResourceVersion())
		}
		// Another manager wants a label the first one owns.
		_, err = apply(second, false, map[string]string{"contested": "second"})
		if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), first) {
			t.Fatalf("apply of a label %s owns, as %s without force: want Conflict naming %s, got %v", first, second, first, err)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels["contested"] != "first" {
			t.Errorf("the conflicting apply reached the namespace: labels %v", ns.Labels)
		}
		forced, err := apply(second, true, map[string]string{"contested": "second"})
		if err != nil {
			t.Fatalf("forced apply as %s: %v", second, err)
		}
		if labels := forced.GetLabels(); labels["contested"] != "second" || labels["applied"] != "first" {
			t.Errorf("forced apply returned labels %v; want contested=second, applied=first", labels)
		}
		ns := e.namespaceNow(t, ctx, spaceName)
		if ns.Labels["contested"] != "second" {
			t.Errorf("after the forced apply the namespace has labels %v; want contested=second", ns.Labels)
		}
		var managers []string
		for _, f := range ns.ManagedFields {
			if f.Operation == metav1.ManagedFieldsOperationApply {
				managers = append(managers, f.Manager)
			}
		}
		if !slices.Contains(managers, first) || !slices.Contains(managers, second) {
			t.Errorf("the namespace's apply managers are %q; want %s and %s", managers, first, second)
		}
	})

	t.Run("strategic merge patch is unsupported", func(t *testing.T) {
		_, err := spaces.Patch(ctx, spaceName, types.StrategicMergePatchType,
			[]byte(`{"metadata":{"labels":{"strategic":"yes"}}}`), metav1.PatchOptions{})
		if !apierrors.IsUnsupportedMediaType(err) {
			t.Fatalf("strategic merge patch: want 415 UnsupportedMediaType, got %v", err)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels["strategic"] != "" {
			t.Errorf("the refused patch reached the namespace: labels %v", ns.Labels)
		}
	})

	t.Run("the server's labels are not the tenant's", func(t *testing.T) {
		const managed = "tenancy.loft.sh/shared"
		current, err := spaces.Get(ctx, spaceName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		current.SetLabels(withLabels(current.GetLabels(), map[string]string{managed: "true"}))
		_, err = spaces.Update(ctx, current, metav1.UpdateOptions{})
		checkManagedRefused(t, "update", err, managed)
		_, err = spaces.Patch(ctx, spaceName, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"`+managed+`":"true"}}}`), metav1.PatchOptions{})
		checkManagedRefused(t, "merge patch", err, managed)
		_, err = spaces.Patch(ctx, spaceName, types.JSONPatchType,
			[]byte(`[{"op":"add","path":"/metadata/labels/tenancy.loft.sh~1shared","value":"true"}]`), metav1.PatchOptions{})
		checkManagedRefused(t, "JSON patch", err, managed)
		_, err = spaces.Apply(ctx, spaceName, newSpace(spaceName, map[string]string{managed: "true"}),
			metav1.ApplyOptions{FieldManager: "cg-apply-managed"})
		checkManagedRefused(t, "apply", err, managed)
		other := name("crud-managed")
		e.cleanupSpace(t, other)
		_, err = spaces.Create(ctx, newSpace(other, map[string]string{managed: "true"}), metav1.CreateOptions{})
		checkManagedRefused(t, "create", err, managed)
		if ns := e.namespaceNow(t, ctx, spaceName); ns.Labels[managed] != "" {
			t.Errorf("a refused write reached the namespace: labels %v", ns.Labels)
		}
		if _, err := e.kube.CoreV1().Namespaces().Get(ctx, other, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the refused create made namespace %s (get: %v)", other, err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		wrongUID := types.UID("00000000-0000-0000-0000-000000000000")
		err := spaces.Delete(ctx, spaceName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &wrongUID}})
		if !apierrors.IsConflict(err) {
			t.Fatalf("delete with a wrong uid precondition: want Conflict, got %v", err)
		}
		err = spaces.Delete(ctx, spaceName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: ptr.To("1")}})
		if !apierrors.IsConflict(err) {
			t.Fatalf("delete with a stale resourceVersion precondition: want Conflict, got %v", err)
		}
		if ns := e.namespaceNow(t, ctx, spaceName); ns.DeletionTimestamp != nil {
			t.Fatalf("a refused delete reached the namespace: deletionTimestamp %v", ns.DeletionTimestamp)
		}

		// Watch the space from now on, then delete it with the right preconditions.
		selector := "metadata.name=" + spaceName
		list, err := spaces.List(ctx, metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		w, err := spaces.Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: list.GetResourceVersion()})
		if err != nil {
			t.Fatalf("watch %s: %v", selector, err)
		}
		defer w.Stop()
		uid := created.GetUID()
		if err := spaces.Delete(ctx, spaceName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
			t.Fatalf("delete with the right uid precondition: %v", err)
		}
		// Read-after-delete: the space is Terminating or already gone.
		if got, err := spaces.Get(ctx, spaceName, metav1.GetOptions{}); err == nil {
			if got.GetDeletionTimestamp() == nil || phaseOf(got) != string(corev1.NamespaceTerminating) {
				t.Errorf("get right after the delete: deletionTimestamp %v, phase %q; want both Terminating",
					got.GetDeletionTimestamp(), phaseOf(got))
			}
		} else if !apierrors.IsNotFound(err) {
			t.Errorf("get right after the delete: %v", err)
		}
		events := readUntil(t, w, deletion, "the watch sees the space DELETED", func(ev watch.Event) bool {
			return ev.Type == watch.Deleted
		})
		terminating := slices.ContainsFunc(events, func(ev watch.Event) bool {
			obj, ok := ev.Object.(*unstructured.Unstructured)
			return ok && ev.Type == watch.Modified && obj.GetDeletionTimestamp() != nil &&
				phaseOf(obj) == string(corev1.NamespaceTerminating)
		})
		if !terminating {
			var summary []string
			for _, ev := range events {
				summary = append(summary, eventSummary(ev))
			}
			t.Errorf("no MODIFIED event showed the space Terminating with a deletionTimestamp before DELETED: %q", summary)
		}
		if _, err := spaces.Get(ctx, spaceName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get after DELETED: want NotFound, got %v", err)
		}
		eventually(t, deletion, "the namespace is gone", func() (bool, string) {
			_, err := e.kube.CoreV1().Namespaces().Get(ctx, spaceName, metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprintf("admin get namespace: %v", err)
		})
	})
}

// checkManagedRefused fails the test unless err is Invalid with a cause naming the managed label.
func checkManagedRefused(t *testing.T, what string, err error, label string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Errorf("%s setting label %s: want Invalid, got %v", what, label, err)
		return
	}
	if fields := causeFields(err); !slices.Contains(fields, "metadata.labels["+label+"]") {
		t.Errorf("%s setting label %s: causes %q; want metadata.labels[%s]", what, label, fields, label)
	}
}

// labelsOf is obj's labels, or nil for no object.
func labelsOf(obj *unstructured.Unstructured) map[string]string {
	if obj == nil {
		return nil
	}
	return obj.GetLabels()
}

// A tenant who may see a space (view in its namespace) but not change it gets Forbidden for every write; a tenant
// who cannot see it gets NotFound, answered exactly like a space that does not exist. Nothing reaches the namespace.
func TestWritesNeedTheRightOnTheNamespace(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	ctx := ctxFor(t)
	ns := e.namespace(t, "ro", map[string]string{"team": "ro"})
	viewer := e.newTenant("ro-viewer")
	stranger := e.newTenant("ro-stranger")
	e.grant(t, ns.Name, viewer.UserSubject())
	viewerSpaces := dynamicClient(t, viewer.Config()).Resource(spacesGVR)
	strangerSpaces := dynamicClient(t, stranger.Config()).Resource(spacesGVR)

	var seen *unstructured.Unstructured
	eventually(t, propagation, "the viewer sees the space", func() (bool, string) {
		var err error
		seen, err = viewerSpaces.Get(ctx, ns.Name, metav1.GetOptions{})
		return err == nil, fmt.Sprintf("get: %v", err)
	})

	writes := []struct {
		what string
		do   func(spaces dynamic.ResourceInterface, target string) error
	}{
		{"update", func(spaces dynamic.ResourceInterface, target string) error {
			obj := seen.DeepCopy()
			obj.SetName(target)
			obj.SetLabels(withLabels(obj.GetLabels(), map[string]string{"changed": "update"}))
			_, err := spaces.Update(ctx, obj, metav1.UpdateOptions{})
			return err
		}},
		{"merge patch", func(spaces dynamic.ResourceInterface, target string) error {
			_, err := spaces.Patch(ctx, target, types.MergePatchType, []byte(`{"metadata":{"labels":{"changed":"merge"}}}`),
				metav1.PatchOptions{})
			return err
		}},
		{"JSON patch", func(spaces dynamic.ResourceInterface, target string) error {
			_, err := spaces.Patch(ctx, target, types.JSONPatchType,
				[]byte(`[{"op":"add","path":"/metadata/labels/changed","value":"json"}]`), metav1.PatchOptions{})
			return err
		}},
		{"apply", func(spaces dynamic.ResourceInterface, target string) error {
			_, err := spaces.Apply(ctx, target, newSpace(target, map[string]string{"changed": "apply"}),
				metav1.ApplyOptions{FieldManager: "cg-ro", Force: true})
			return err
		}},
		{"delete", func(spaces dynamic.ResourceInterface, target string) error {
			return spaces.Delete(ctx, target, metav1.DeleteOptions{})
		}},
	}
	missing := name("ro-missing")
	for _, w := range writes {
		if err := w.do(viewerSpaces, ns.Name); !apierrors.IsForbidden(err) {
			t.Errorf("%s by a tenant who may only view the space: want Forbidden, got %v", w.what, err)
		}
		hiddenErr := w.do(strangerSpaces, ns.Name)
		missingErr := w.do(strangerSpaces, missing)
		if !apierrors.IsNotFound(hiddenErr) || !apierrors.IsNotFound(missingErr) {
			t.Errorf("%s by a tenant who cannot see the space: want NotFound for it and for a missing one, got %v and %v",
				w.what, hiddenErr, missingErr)
			continue
		}
		if hidden, absent := statusOf(t, hiddenErr, ns.Name), statusOf(t, missingErr, missing); hidden != absent {
			t.Errorf("%s of a hidden space answers differently from a missing one (names replaced by <name>):\nhidden:  %s\nmissing: %s",
				w.what, hidden, absent)
		}
	}
	current := e.namespaceNow(t, ctx, ns.Name)
	if _, changed := current.Labels["changed"]; changed || current.DeletionTimestamp != nil {
		t.Errorf("a refused write reached namespace %s: labels %v, deletionTimestamp %v", ns.Name, current.Labels,
			current.DeletionTimestamp)
	}
	// The viewer still sees it, unchanged.
	if got, err := viewerSpaces.Get(ctx, ns.Name, metav1.GetOptions{}); err != nil || got.GetLabels()["changed"] != "" {
		t.Errorf("the viewer's get after the refused writes: %v, labels %v", err, labelsOf(got))
	}
}

// dryRun=All: a create answers with the space it would make and makes nothing; on an existing space an update and a
// delete answer as if done and change nothing.
func TestDryRun(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	ctx := ctxFor(t)
	tn := e.newTenant("dry")
	e.allowNamespaceCreate(t, tn)
	spaces := dynamicClient(t, tn.Config()).Resource(spacesGVR)
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

	phantom := name("dry")
	e.cleanupSpace(t, phantom)
	got, err := untilAuthorized(t, func() (*unstructured.Unstructured, error) {
		return spaces.Create(ctx, newSpace(phantom, map[string]string{"env": "dry"}), dry)
	})
	if err != nil {
		t.Fatalf("dry-run create of %s: %v", phantom, err)
	}
	if got.GetName() != phantom || got.GetKind() != "Space" || got.GetLabels()["env"] != "dry" {
		t.Errorf("dry-run create returned %v; want Space %s with env=dry", got.Object, phantom)
	}
	if _, err := e.kube.CoreV1().Namespaces().Get(ctx, phantom, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after a dry-run create, admin get of namespace %s: want NotFound, got %v", phantom, err)
	}
	if _, err := spaces.Get(ctx, phantom, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after a dry-run create, the tenant's get of %s: want NotFound, got %v", phantom, err)
	}

	// A real space, then dry-run writes to it.
	existing := name("dry-real")
	e.cleanupSpace(t, existing)
	if _, err := spaces.Create(ctx, newSpace(existing, map[string]string{"env": "real"}), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", existing, err)
	}
	current, err := spaces.Get(ctx, existing, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	current.SetLabels(withLabels(current.GetLabels(), map[string]string{"env": "dry-update"}))
	updated, err := spaces.Update(ctx, current, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || updated.GetLabels()["env"] != "dry-update" {
		t.Errorf("dry-run update: %v, labels %v; want env=dry-update in the answer", err, labelsOf(updated))
	}
	err = spaces.Delete(ctx, existing, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Errorf("dry-run delete: %v", err)
	}
	ns := e.namespaceNow(t, ctx, existing)
	if ns.Labels["env"] != "real" || ns.DeletionTimestamp != nil {
		t.Errorf("dry-run writes reached namespace %s: labels %v, deletionTimestamp %v", existing, ns.Labels, ns.DeletionTimestamp)
	}
}

// A typed-like create of every field a client may set, as the member of an Account: labels, annotations,
// generateName (the server picks the name) and spec.account come back on the created Space (201), on a get, and on
// the namespace (which carries the account label); a typed delete answers with the Space Terminating.
func TestTypedCreateRoundTrip(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	ctx := ctxFor(t)
	tn := e.newTenant("tcreate")
	account := e.account(t, tn, 5)
	client := typedClient(t, tn.Config())

	prefix := name("gen") + "-"
	labels := map[string]string{"team": "typed", "tier": "gold"}
	annotations := map[string]string{"example.com/note": "round trip", "example.com/owner": tn.User}
	want := &Space{
		TypeMeta:   metav1.TypeMeta{APIVersion: tenancyGV.String(), Kind: "Space"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix, Labels: labels, Annotations: annotations},
		Spec:       SpaceSpec{Account: account},
	}
	var created Space
	var createdRaw []byte
	code, err := untilAuthorized(t, func() (int, error) {
		created = Space{}
		var code int
		result := client.Post().Resource("spaces").Body(want).Do(ctx)
		result.StatusCode(&code)
		createdRaw, _ = result.Raw()
		return code, result.Into(&created)
	})
	if err != nil {
		t.Fatalf("create with generateName %q in account %s as a member: %v", prefix, account, err)
	}
	e.cleanupSpace(t, created.Name)
	if code != 201 {
		t.Errorf("create answered %d; want 201", code)
	}
	if !strings.HasPrefix(created.Name, prefix) || len(created.Name) <= len(prefix) {
		t.Errorf("created name %q; want %q and a suffix chosen by the server", created.Name, prefix)
	}
	wantLabels := withLabels(labels, map[string]string{accountLabel: account})
	// Typed decoding clears apiVersion and kind (as for every generated client), so they are read off the wire.
	check := func(what string, s *Space, raw []byte) {
		t.Helper()
		var wire metav1.TypeMeta
		if err := json.Unmarshal(raw, &wire); err != nil || wire.APIVersion != tenancyGV.String() || wire.Kind != "Space" {
			t.Errorf("%s: on the wire apiVersion %q kind %q (%v); want %s Space; body: %s", what, wire.APIVersion,
				wire.Kind, err, tenancyGV, raw)
		}
		if s.UID == "" || s.ResourceVersion == "" || s.CreationTimestamp.IsZero() {
			t.Errorf("%s: uid %q resourceVersion %q creationTimestamp %v; want all set",
				what, s.UID, s.ResourceVersion, s.CreationTimestamp)
		}
		if !hasLabels(s.Labels, wantLabels) {
			t.Errorf("%s: labels %v; want %v", what, s.Labels, wantLabels)
		}
		if !hasLabels(s.Annotations, annotations) {
			t.Errorf("%s: annotations %v; want %v", what, s.Annotations, annotations)
		}
		if s.Spec.Account != account {
			t.Errorf("%s: spec.account %q; want %q", what, s.Spec.Account, account)
		}
		if s.Status.Phase != corev1.NamespaceActive {
			t.Errorf("%s: status.phase %q; want Active", what, s.Status.Phase)
		}
	}
	check("the created space", &created, createdRaw)

	ns := e.namespaceNow(t, ctx, created.Name)
	if ns.UID != created.UID || !hasLabels(ns.Labels, wantLabels) || !hasLabels(ns.Annotations, annotations) {
		t.Errorf("namespace %s: uid %s labels %v annotations %v; want uid %s, labels %v (with %s) and annotations %v",
			ns.Name, ns.UID, ns.Labels, ns.Annotations, created.UID, wantLabels, accountLabel, annotations)
	}

	var got Space
	result := client.Get().Resource("spaces").Name(created.Name).Do(ctx)
	if err := result.Into(&got); err != nil {
		t.Fatalf("typed get of %s right after create: %v", created.Name, err)
	}
	gotRaw, _ := result.Raw()
	check("the space on a get", &got, gotRaw)
	if got.UID != created.UID {
		t.Errorf("get returned uid %s; created %s", got.UID, created.UID)
	}

	// A typed delete answers with the space as it now is: Terminating.
	var deleted Space
	uid := created.UID
	err = client.Delete().Resource("spaces").Name(created.Name).
		Body(&metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}).Do(ctx).Into(&deleted)
	if err != nil {
		t.Fatalf("typed delete of %s: %v", created.Name, err)
	}
	if deleted.Name != created.Name || deleted.DeletionTimestamp == nil || deleted.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("delete answered %s with deletionTimestamp %v, phase %q; want the space Terminating", deleted.Name,
			deleted.DeletionTimestamp, deleted.Status.Phase)
	}
	eventually(t, deletion, "the deleted space's namespace is gone", func() (bool, string) {
		_, err := e.kube.CoreV1().Namespaces().Get(ctx, created.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprintf("admin get namespace: %v", err)
	})
}
