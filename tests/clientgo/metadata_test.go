package clientgo

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
)

// describeEvent renders a watch event for failure messages.
func describeEvent(ev watch.Event) string {
	if m, ok := ev.Object.(*metav1.PartialObjectMetadata); ok {
		return fmt.Sprintf("%s %s (rv %s)", ev.Type, m.Name, m.ResourceVersion)
	}
	if s, ok := ev.Object.(*metav1.Status); ok {
		return fmt.Sprintf("%s Status %d %s: %s", ev.Type, s.Code, s.Reason, s.Message)
	}
	return fmt.Sprintf("%s %T %+v", ev.Type, ev.Object, ev.Object)
}

// The metadata client (what the garbage collector and quota use) as a tenant: the list is exactly the tenant's
// spaces as PartialObjectMetadata; a watch from the list's resourceVersion gets ADDED when a namespace is granted and
// DELETED when the grant is revoked, every event object a *metav1.PartialObjectMetadata, and nothing about a
// namespace the tenant cannot see.
func TestMetadataClientListAndWatch(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	ctx := ctxFor(t)
	tn := e.newTenant("meta")
	visible := e.namespace(t, "meta-visible", nil)
	later := e.namespace(t, "meta-later", nil)
	e.grant(t, visible.Name, tn.GroupSubject())

	client, err := metadata.NewForConfig(tn.Config())
	if err != nil {
		t.Fatal(err)
	}
	spaces := client.Resource(spacesGVR)

	var list *metav1.PartialObjectMetadataList
	eventually(t, propagation, "the tenant's metadata list shows exactly its space", func() (bool, string) {
		list, err = spaces.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, item := range list.Items {
			names = append(names, item.Name)
		}
		return slices.Equal(names, []string{visible.Name}), fmt.Sprintf("%q, want [%q]", names, visible.Name)
	})
	if list.ResourceVersion == "" {
		t.Errorf("the metadata list has no resourceVersion: %+v", list.ListMeta)
	}
	if item := list.Items[0]; item.UID != visible.UID || item.ResourceVersion == "" || item.CreationTimestamp.IsZero() {
		t.Errorf("metadata list item %+v; want uid %s, a resourceVersion and a creationTimestamp", item.ObjectMeta, visible.UID)
	}
	// The client falls back to reading full objects' metadata when the server ignores the as=PartialObjectMetadataList
	// Accept; the items' own kind (kept from the wire) tells which it got.
	if item := list.Items[0]; item.Kind != "PartialObjectMetadata" || item.APIVersion != "meta.k8s.io/v1" {
		t.Errorf("metadata list item is kind %q apiVersion %q; want PartialObjectMetadata meta.k8s.io/v1 (the server "+
			"did not answer as=PartialObjectMetadataList)", item.Kind, item.APIVersion)
	}
	one, err := spaces.Get(ctx, visible.Name, metav1.GetOptions{})
	if err != nil || one.UID != visible.UID {
		t.Fatalf("metadata get %s: %+v, %v; want uid %s", visible.Name, one, err, visible.UID)
	}

	w, err := spaces.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
	if err != nil {
		t.Fatalf("metadata watch from resourceVersion %s: %v", list.ResourceVersion, err)
	}
	defer w.Stop()
	var seen []string
	// next returns the next event that is not a bookmark, failing the test on a wrong object or a deadline.
	next := func(what string) watch.Event {
		t.Helper()
		timeout := time.After(propagation)
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatalf("the watch closed while waiting for %s; events so far: %q", what, seen)
				}
				seen = append(seen, describeEvent(ev))
				if _, ok := ev.Object.(*metav1.PartialObjectMetadata); !ok {
					t.Fatalf("a watch event object is %T, not *metav1.PartialObjectMetadata; events so far: %q", ev.Object, seen)
				}
				if ev.Type == watch.Bookmark {
					continue
				}
				return ev
			case <-timeout:
				t.Fatalf("no %s within %v; events so far: %q", what, propagation, seen)
			}
		}
	}

	// A namespace nobody grants this tenant is created while it watches: it must not show up.
	e.namespace(t, "meta-bystander", nil)
	binding := e.grant(t, later.Name, tn.UserSubject())
	ev := next("ADDED " + later.Name)
	if m := ev.Object.(*metav1.PartialObjectMetadata); ev.Type != watch.Added || m.Name != later.Name || m.UID != later.UID {
		t.Fatalf("want ADDED %s (uid %s); events so far: %q", later.Name, later.UID, seen)
	}

	e.revoke(t, later.Name, binding)
	ev = next("DELETED " + later.Name)
	if m := ev.Object.(*metav1.PartialObjectMetadata); ev.Type != watch.Deleted || m.Name != later.Name {
		t.Fatalf("want DELETED %s; events so far: %q", later.Name, seen)
	}
	for _, s := range seen {
		if strings.Contains(s, "meta-bystander") || strings.Contains(s, visible.Name) {
			t.Errorf("the watch reported a space it should not have: %q", seen)
		}
	}
}
