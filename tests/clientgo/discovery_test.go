package clientgo

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

// findResource returns the APIResource named resource in the list for groupVersion, if any.
func findResource(lists []*metav1.APIResourceList, groupVersion, resource string) (metav1.APIResource, bool) {
	for _, list := range lists {
		if list == nil || list.GroupVersion != groupVersion {
			continue
		}
		for _, r := range list.APIResources {
			if r.Name == resource {
				return r, true
			}
		}
	}
	return metav1.APIResource{}, false
}

// checkSpacesResource checks the discovery entry of spaces, as kubectl and controllers rely on it.
func checkSpacesResource(t *testing.T, source string, r metav1.APIResource) {
	t.Helper()
	if r.Kind != "Space" || r.SingularName != "space" || r.Namespaced {
		t.Errorf("%s: spaces has kind %q, singularName %q, namespaced %v; want Space, space, false (cluster-scoped): %+v",
			source, r.Kind, r.SingularName, r.Namespaced, r)
	}
	if !slices.Contains(r.ShortNames, "sp") {
		t.Errorf("%s: spaces shortNames %q lack sp: %+v", source, r.ShortNames, r)
	}
	if !slices.Contains(r.Categories, "tenancy") {
		t.Errorf("%s: spaces categories %q lack tenancy: %+v", source, r.Categories, r)
	}
	for _, verb := range []string{"get", "list", "watch"} {
		if !slices.Contains(r.Verbs, verb) {
			t.Errorf("%s: spaces verbs %q lack %s: %+v", source, r.Verbs, verb, r)
		}
	}
}

// Aggregated discovery (client-go's default) lists the group in one request; the legacy per-group-version document
// says the same; a deferred discovery RESTMapper with the shortcut expander resolves every name kubectl accepts, and
// the category expands to spaces. All as a tenant with no grants at all: discovery needs none.
func TestDiscoveryAndRESTMapper(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	tn := e.newTenant("disc")

	// Aggregated discovery: /api and /apis answer with APIGroupDiscoveryList and no per-group request follows.
	// kube-apiserver refreshes what it knows of the group on its own schedule, so a fresh environment may need a
	// moment: retry with a fresh client until the group is there.
	var (
		rec    *e2eenv.Recorder
		dc     *discovery.DiscoveryClient
		groups []*metav1.APIGroup
		lists  []*metav1.APIResourceList
	)
	eventually(t, propagation, "aggregated discovery lists tenancy.loft.sh/v1 spaces", func() (bool, string) {
		cfg := tn.Config()
		rec = &e2eenv.Recorder{}
		rec.Record(cfg)
		var err error
		if dc, err = discovery.NewDiscoveryClientForConfig(cfg); err != nil {
			return false, err.Error()
		}
		groups, lists, err = dc.ServerGroupsAndResources()
		if err != nil {
			return false, fmt.Sprintf("ServerGroupsAndResources: %v; requests:%s", err, rec.String())
		}
		_, ok := findResource(lists, tenancyGV.String(), "spaces")
		return ok, fmt.Sprintf("no spaces in tenancy.loft.sh/v1; requests:%s", rec.String())
	})
	apis := rec.Matching(func(x e2eenv.Exchange) bool { return x.Path == "/apis" })
	if len(apis) == 0 || !strings.Contains(apis[0].ContentType, "as=APIGroupDiscoveryList") ||
		!strings.Contains(apis[0].ContentType, "g=apidiscovery.k8s.io") || !strings.Contains(apis[0].ContentType, "v=v2") {
		t.Errorf("GET /apis was not answered with aggregated discovery v2; requests:%s", rec.String())
	}
	if legacy := rec.Matching(func(x e2eenv.Exchange) bool { return strings.HasPrefix(x.Path, "/apis/tenancy.loft.sh") }); len(legacy) > 0 {
		t.Errorf("client-go fell back to legacy discovery for the group; requests:%s", rec.String())
	}
	t.Logf("discovery requests:%s", rec.String())
	var group *metav1.APIGroup
	for _, g := range groups {
		if g.Name == tenancyGV.Group {
			group = g
		}
	}
	if group == nil || group.PreferredVersion.GroupVersion != tenancyGV.String() {
		var names []string
		for _, g := range groups {
			names = append(names, fmt.Sprintf("%s (preferred %s)", g.Name, g.PreferredVersion.GroupVersion))
		}
		t.Fatalf("aggregated discovery: group tenancy.loft.sh with preferred version v1 missing; groups: %v", names)
	}
	aggregated, ok := findResource(lists, tenancyGV.String(), "spaces")
	if !ok {
		t.Fatalf("aggregated discovery: no spaces in tenancy.loft.sh/v1: %+v", lists)
	}
	checkSpacesResource(t, "aggregated discovery", aggregated)

	// Legacy discovery: GET /apis/tenancy.loft.sh/v1, proxied to the server, agrees.
	legacyList, err := dc.WithLegacy().ServerResourcesForGroupVersion(tenancyGV.String())
	if err != nil {
		t.Fatalf("legacy ServerResourcesForGroupVersion(tenancy.loft.sh/v1): %v", err)
	}
	legacy, ok := findResource([]*metav1.APIResourceList{legacyList}, tenancyGV.String(), "spaces")
	if !ok {
		t.Fatalf("legacy discovery: no spaces: %+v", legacyList)
	}
	checkSpacesResource(t, "legacy discovery", legacy)
	sortedCopy := func(s []string) []string { return e2eenv.Sorted(s...) }
	if legacy.Kind != aggregated.Kind || legacy.Namespaced != aggregated.Namespaced ||
		legacy.SingularName != aggregated.SingularName ||
		!slices.Equal(sortedCopy(legacy.Verbs), sortedCopy(aggregated.Verbs)) ||
		!slices.Equal(sortedCopy(legacy.ShortNames), sortedCopy(aggregated.ShortNames)) ||
		!slices.Equal(sortedCopy(legacy.Categories), sortedCopy(aggregated.Categories)) {
		t.Errorf("legacy and aggregated discovery disagree:\nlegacy:     %+v\naggregated: %+v", legacy, aggregated)
	}

	// What kubectl api-resources and the garbage collector use.
	preferred, err := dc.ServerPreferredResources()
	if err != nil {
		t.Fatalf("ServerPreferredResources: %v", err)
	}
	if _, ok := findResource(preferred, tenancyGV.String(), "spaces"); !ok {
		t.Errorf("ServerPreferredResources lacks tenancy.loft.sh/v1 spaces")
	}

	// The RESTMapper kubectl builds: deferred discovery over a memory cache, with the shortcut expander.
	cached := memory.NewMemCacheClient(dc)
	var warnings []string
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached,
		func(w string) { warnings = append(warnings, w) })
	for _, input := range []schema.GroupVersionResource{
		{Resource: "spaces"},
		{Resource: "space"},
		{Resource: "sp"},
		{Resource: "SPACES"},
		{Group: "tenancy.loft.sh", Resource: "spaces"},
		{Group: "tenancy.loft.sh", Resource: "sp"},
		{Group: "tenancy.loft.sh", Version: "v1", Resource: "space"},
	} {
		gvr, err := mapper.ResourceFor(input)
		if err != nil || gvr != spacesGVR {
			t.Errorf("ResourceFor(%q) = %v, %v; want %v", input.String(), gvr, err, spacesGVR)
		}
		gvk, err := mapper.KindFor(input)
		if err != nil || gvk != spaceGVK {
			t.Errorf("KindFor(%q) = %v, %v; want %v", input.String(), gvk, err, spaceGVK)
		}
	}
	mapping, err := mapper.RESTMapping(spaceGVK.GroupKind())
	if err != nil {
		t.Fatalf("RESTMapping(Space.tenancy.loft.sh): %v", err)
	}
	if mapping.Resource != spacesGVR || mapping.GroupVersionKind != spaceGVK || mapping.Scope.Name() != meta.RESTScopeNameRoot {
		t.Errorf("RESTMapping(Space.tenancy.loft.sh) = resource %v, kind %v, scope %q; want %v, %v, %q",
			mapping.Resource, mapping.GroupVersionKind, mapping.Scope.Name(), spacesGVR, spaceGVK, meta.RESTScopeNameRoot)
	}
	if singular, err := mapper.ResourceSingularizer("spaces"); err != nil || singular != "space" {
		t.Errorf("ResourceSingularizer(spaces) = %q, %v; want space", singular, err)
	}
	if len(warnings) > 0 {
		t.Errorf("the shortcut expander warned: %q", warnings)
	}

	// The category, as `kubectl get tenancy` expands it.
	expanded, ok := restmapper.NewDiscoveryCategoryExpander(cached).Expand("tenancy")
	spaces := schema.GroupResource{Group: tenancyGV.Group, Resource: "spaces"}
	if !ok || !slices.Contains(expanded, spaces) {
		t.Errorf("category tenancy expands to %v (ok %v); want it to contain %v", expanded, ok, spaces)
	}
	for _, gr := range expanded {
		if gr.Group != tenancyGV.Group {
			t.Errorf("category tenancy expands to a resource of another group: %v (all: %v)", gr, expanded)
		}
	}
}
