package clientgo

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

// rewatchSeconds is the watch timeout of the "dynamic-rewatch" informer, so that its reflector resumes its watch
// from the last resourceVersion it saw within the test, as every informer does every 5-10 minutes.
const rewatchSeconds = 2

// informerKind is an informer factory controllers build for a resource they do not compile in.
type informerKind struct {
	name string
	// rewatch: the watch ends after rewatchSeconds, and the test waits for the reflector to resume it.
	rewatch bool
	new     func(t *testing.T, cfg *rest.Config) informers.GenericInformer
}

var informerKinds = []informerKind{
	{name: "dynamic", new: func(t *testing.T, cfg *rest.Config) informers.GenericInformer {
		return dynamicinformer.NewDynamicSharedInformerFactory(dynamicClient(t, cfg), 0).ForResource(spacesGVR)
	}},
	{name: "metadata", new: func(t *testing.T, cfg *rest.Config) informers.GenericInformer {
		client, err := metadata.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return metadatainformer.NewSharedInformerFactory(client, 0).ForResource(spacesGVR)
	}},
	{name: "dynamic-rewatch", rewatch: true, new: func(t *testing.T, cfg *rest.Config) informers.GenericInformer {
		// The reflector sets a timeout on its watches only (the Watch field is set later, by the client).
		short := func(o *metav1.ListOptions) {
			if o.TimeoutSeconds != nil {
				o.TimeoutSeconds = ptr.To[int64](rewatchSeconds)
			}
		}
		return dynamicinformer.NewFilteredDynamicSharedInformerFactory(dynamicClient(t, cfg), 0, "", short).
			ForResource(spacesGVR)
	}},
}

func dynamicClient(t *testing.T, cfg *rest.Config) dynamic.Interface {
	t.Helper()
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// Informers as a tenant, with client-go's WatchListClient feature on (its default: one watch with
// sendInitialEvents=true, synced by the initial-events-end bookmark) and off (LIST then WATCH): each syncs within a
// deadline to exactly the tenant's spaces, a grant appears in the store and a revocation removes it, and the requests
// show which protocol was really used (a silent fallback from WatchList to LIST fails the test). The
// "dynamic-rewatch" informer's watches end every few seconds, and grants and revocations must still arrive through
// the resumed watches, without a relist.
//
// The feature gate is process-wide, so the two settings run one after the other; within a setting the dynamic and
// the metadata informers run in parallel. No other test builds a reflector, so nothing else reads the gate.
func TestInformers(t *testing.T) {
	t.Parallel()
	e := testEnv(t)
	for _, watchList := range []bool{true, false} {
		t.Run(fmt.Sprintf("WatchListClient=%v", watchList), func(t *testing.T) {
			clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, watchList)
			for _, kind := range informerKinds {
				t.Run(kind.name, func(t *testing.T) {
					t.Parallel()
					if got := clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient); got != watchList {
						t.Fatalf("WatchListClient is %v; want %v", got, watchList)
					}
					runInformer(t, e, watchList, kind)
				})
			}
		})
	}
}

func runInformer(t *testing.T, e *env, watchList bool, kind informerKind) {
	ctx := ctxFor(t)
	tn := e.newTenant("inf")
	first := e.namespace(t, "inf-a", nil)
	second := e.namespace(t, "inf-b", nil)
	later := e.namespace(t, "inf-later", nil)
	e.grant(t, first.Name, tn.UserSubject())
	e.grant(t, second.Name, tn.GroupSubject())
	want := e2eenv.Sorted(first.Name, second.Name)
	// Wait until the server shows the two grants, so the informer's initial state is known.
	waitForList(t, tn, want)

	cfg := tn.Config()
	var rec e2eenv.Recorder
	rec.Record(cfg)
	informer := kind.new(t, cfg).Informer()
	var errsMu sync.Mutex
	var errs []string
	watchErrs := func() []string {
		errsMu.Lock()
		defer errsMu.Unlock()
		return slices.Clone(errs)
	}
	if err := informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		errsMu.Lock()
		defer errsMu.Unlock()
		errs = append(errs, err.Error())
	}); err != nil {
		t.Fatal(err)
	}
	informerCtx, stop := context.WithCancel(ctx)
	defer stop()
	go informer.RunWithContext(informerCtx)

	storeNames := func() []string { return e2eenv.Sorted(informer.GetStore().ListKeys()...) }
	syncCtx, cancelSync := context.WithTimeout(ctx, propagation)
	defer cancelSync()
	if !cache.WaitForCacheSync(syncCtx.Done(), informer.HasSynced) {
		t.Fatalf("HasSynced not true within %v; store %q; watch errors %q; requests:%s", propagation, storeNames(), watchErrs(), rec.String())
	}
	if got := storeNames(); !slices.Equal(got, want) {
		t.Fatalf("after sync the store holds %q; want exactly %q; requests:%s", got, want, rec.String())
	}
	if informer.LastSyncResourceVersion() == "" {
		t.Errorf("the informer has no LastSyncResourceVersion after sync")
	}

	// Which protocol synced the informer.
	lists := rec.Matching(func(x e2eenv.Exchange) bool { return x.IsSpaces() && !x.IsWatch() })
	watchLists := rec.Matching(func(x e2eenv.Exchange) bool {
		return x.IsSpaces() && x.IsWatch() && x.Values().Get("sendInitialEvents") == "true"
	})
	if watchList {
		if len(lists) > 0 || len(watchLists) == 0 || watchLists[0].Status != 200 {
			t.Errorf("with WatchListClient on, want one watch with sendInitialEvents=true answered 200 and no LIST; requests:%s", rec.String())
		}
	} else {
		if len(lists) == 0 || lists[0].Status != 200 || len(watchLists) > 0 {
			t.Errorf("with WatchListClient off, want a LIST answered 200 and no sendInitialEvents; requests:%s", rec.String())
		}
	}

	watchCount := func() int {
		return len(rec.Matching(func(x e2eenv.Exchange) bool { return x.IsSpaces() && x.IsWatch() }))
	}
	// awaitResume waits for the reflector to start another watch (from the last resourceVersion it saw).
	awaitResume := func(what string) {
		t.Helper()
		if !kind.rewatch {
			return
		}
		n := watchCount()
		eventually(t, propagation, "the reflector resumes its watch "+what, func() (bool, string) {
			return watchCount() > n, rec.String()
		})
	}

	// With rewatch, the grant arrives on a resumed watch, and the revocation on a watch resumed from the grant's
	// event (or a later bookmark).
	awaitResume("after the initial sync")
	binding := e.grant(t, later.Name, tn.UserSubject())
	withLater := e2eenv.Sorted(first.Name, second.Name, later.Name)
	eventually(t, propagation, "the grant appears in the informer's store", func() (bool, string) {
		got := storeNames()
		return slices.Equal(got, withLater), fmt.Sprintf("%q, want %q", got, withLater)
	})
	awaitResume("after the grant")
	e.revoke(t, later.Name, binding)
	eventually(t, propagation, "the revocation leaves the informer's store", func() (bool, string) {
		got := storeNames()
		return slices.Equal(got, want), fmt.Sprintf("%q, want %q", got, want)
	})
	if item, exists, err := informer.GetStore().GetByKey(first.Name); err != nil || !exists {
		t.Errorf("store lookup of %s: %v, %v, %v", first.Name, item, exists, err)
	}
	// Resumed watches start from a resourceVersion the informer has seen and never ask for initial events again;
	// nothing made the reflector relist.
	watches := rec.Matching(func(x e2eenv.Exchange) bool { return x.IsSpaces() && x.IsWatch() })
	for i, x := range watches {
		if i == 0 && watchList {
			continue
		}
		if rv := x.Values().Get("resourceVersion"); rv == "" || rv == "0" || x.Values().Has("sendInitialEvents") || x.Status != 200 {
			t.Errorf("watch %d should resume from a resourceVersion and be answered 200: %s; requests:%s", i, x, rec.String())
		}
	}
	if lists := rec.Matching(func(x e2eenv.Exchange) bool { return x.IsSpaces() && !x.IsWatch() }); len(lists) > 1 {
		t.Errorf("the reflector listed %d times; requests:%s", len(lists), rec.String())
	}
	if initial := rec.Matching(func(x e2eenv.Exchange) bool { return x.Values().Has("sendInitialEvents") }); len(initial) > 1 {
		t.Errorf("the reflector asked for initial events %d times; requests:%s", len(initial), rec.String())
	}
	t.Logf("requests:%s", rec.String())
	if errs := watchErrs(); len(errs) > 0 {
		t.Errorf("the informer's reflector reported errors: %q; requests:%s", errs, rec.String())
	}
}

// waitForList waits until the tenant's list of spaces is exactly want.
func waitForList(t *testing.T, tn *tenant, want []string) {
	t.Helper()
	client, err := metadata.NewForConfig(tn.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	eventually(t, propagation, "the tenant lists exactly its spaces", func() (bool, string) {
		list, err := client.Resource(spacesGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, item := range list.Items {
			names = append(names, item.Name)
		}
		names = e2eenv.Sorted(names...)
		return slices.Equal(names, want), fmt.Sprintf("%q, want %q", names, want)
	})
}
