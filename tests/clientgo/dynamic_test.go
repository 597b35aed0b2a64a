package clientgo

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

// names returns the sorted names of a dynamic list's items.
func unstructuredNames(list *unstructured.UnstructuredList) []string {
	var out []string
	for _, item := range list.Items {
		out = append(out, item.GetName())
	}
	return e2eenv.Sorted(out...)
}

// The dynamic client as a tenant: the list is exactly the tenant's spaces (granted to the user and to its group),
// items carry apiVersion and kind on the wire, the list has a resourceVersion; a visible space can be fetched, and a
// hidden namespace answers exactly like one that does not exist.
func TestDynamicClient(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	ctx := ctxFor(t)
	tn := e.newTenant("dyn")
	byUser := e.namespace(t, "dyn-user", nil)
	byGroup := e.namespace(t, "dyn-group", nil)
	hidden := e.namespace(t, "dyn-hidden", nil)
	e.grant(t, byUser.Name, tn.UserSubject())
	e.grant(t, byGroup.Name, tn.GroupSubject())
	// Someone else's grant on the hidden namespace: visible to them, not to this tenant.
	e.grant(t, hidden.Name, e.newTenant("dyn-other").UserSubject())

	cfg := tn.Config()
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	spaces := client.Resource(spacesGVR)
	want := e2eenv.Sorted(byUser.Name, byGroup.Name)

	var list *unstructured.UnstructuredList
	eventually(t, propagation, "the tenant's list shows exactly its two spaces", func() (bool, string) {
		list, err = spaces.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		got := unstructuredNames(list)
		return slices.Equal(got, want), fmt.Sprintf("%q, want %q", got, want)
	})
	if list.GetResourceVersion() == "" {
		t.Errorf("the list has no metadata.resourceVersion: %v", list.Object)
	}
	if list.GetKind() != "SpaceList" || list.GetAPIVersion() != tenancyGV.String() {
		t.Errorf("the list is kind %q apiVersion %q; want SpaceList %s", list.GetKind(), list.GetAPIVersion(), tenancyGV)
	}
	for _, item := range list.Items {
		if item.GetKind() != "Space" || item.GetAPIVersion() != tenancyGV.String() || item.GetUID() == "" ||
			item.GetResourceVersion() == "" || item.GetCreationTimestamp().Time.IsZero() {
			t.Errorf("list item lacks kind, apiVersion, uid, resourceVersion or creationTimestamp: %v", item.Object)
		}
	}

	// client-go fills items' kind from the list's when they lack it, so check the wire too.
	rc, err := rest.RESTClientFor(restConfigForRaw(cfg))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rc.Get().AbsPath("/apis/tenancy.loft.sh/v1/spaces").DoRaw(ctx)
	if err != nil {
		t.Fatalf("raw GET /apis/tenancy.loft.sh/v1/spaces: %v: %s", err, raw)
	}
	var wire struct {
		Items []struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		t.Fatalf("decoding the raw list: %v: %s", err, raw)
	}
	for _, item := range wire.Items {
		if item.APIVersion != tenancyGV.String() || item.Kind != "Space" {
			t.Errorf("an item on the wire has apiVersion %q kind %q; want %s Space; body: %s", item.APIVersion, item.Kind, tenancyGV, raw)
		}
	}

	// Get of a visible space.
	got, err := spaces.Get(ctx, byGroup.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get of visible space %s: %v", byGroup.Name, err)
	}
	if got.GetName() != byGroup.Name || got.GetKind() != "Space" || got.GetAPIVersion() != tenancyGV.String() ||
		got.GetUID() != byGroup.UID {
		t.Errorf("get %s returned %v; want Space %s with uid %s", byGroup.Name, got.Object, byGroup.Name, byGroup.UID)
	}

	// A hidden namespace and a missing one: the same NotFound, but for the name.
	_, hiddenErr := spaces.Get(ctx, hidden.Name, metav1.GetOptions{})
	missingName := name("dyn-missing")
	_, missingErr := spaces.Get(ctx, missingName, metav1.GetOptions{})
	for _, c := range []struct {
		what, name string
		err        error
	}{{"hidden", hidden.Name, hiddenErr}, {"missing", missingName, missingErr}} {
		if !apierrors.IsNotFound(c.err) {
			t.Fatalf("get of %s space %s: want NotFound, got %v", c.what, c.name, c.err)
		}
		want := fmt.Sprintf(`spaces.tenancy.loft.sh "%s" not found`, c.name)
		if c.err.Error() != want {
			t.Errorf("get of %s space: message %q; want %q", c.what, c.err.Error(), want)
		}
	}
	hiddenStatus := statusOf(t, hiddenErr, hidden.Name)
	missingStatus := statusOf(t, missingErr, missingName)
	if hiddenStatus != missingStatus {
		t.Errorf("a hidden space answers differently from a missing one (names replaced by <name>):\nhidden:  %s\nmissing: %s",
			hiddenStatus, missingStatus)
	}
}

// statusOf renders an API error's Status as JSON with the name replaced by <name>.
func statusOf(t *testing.T, err error, name string) string {
	t.Helper()
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		t.Fatalf("%v is not an API status error", err)
	}
	body, jerr := json.Marshal(status.Status())
	if jerr != nil {
		t.Fatal(jerr)
	}
	return strings.ReplaceAll(string(body), name, "<name>")
}

// restConfigForRaw is cfg set up for a plain REST client that only fetches bytes.
func restConfigForRaw(cfg *rest.Config) *rest.Config {
	raw := rest.CopyConfig(cfg)
	raw.GroupVersion = &tenancyGV
	raw.APIPath = "/apis"
	raw.NegotiatedSerializer = tenancyCodecs
	return raw
}
