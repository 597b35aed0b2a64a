// Package restart holds the client-go cases that restart kube-apiserver under a running informer. A restart disturbs
// every other client of the control plane, so tests/run.sh runs this package alone, after the other client-go
// packages:
//
//	bash tests/env/up.sh /tmp/rs-env
//	cd tests/clientgo && TENANCY_E2E_ENV=/tmp/rs-env/env GOTOOLCHAIN=local go test -count=1 -v ./restart
//	bash tests/controlplane/down.sh /tmp/rs-env
package restart

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

const (
	// How long the informer may take to sync, and the server to show a change before the restart.
	propagation = 30 * time.Second
	// How long the admin's writes are retried while kube-apiserver is down or starting.
	writeTimeout = 90 * time.Second
	// How long, once kube-apiserver is healthy and the writes are in, the informer's store may take to be exact.
	convergence = 60 * time.Second
	// How long the exact store must then stay exact (no phantom coming back, no space lost again).
	settle = 5 * time.Second
	// The deadline of one setting of WatchListClient.
	caseTimeout = 4 * time.Minute
)

// A tenant's dynamic informer on spaces keeps an exact store across a restart of kube-apiserver, without being
// restarted itself, with client-go's WatchListClient on (one watch with sendInitialEvents=true) and off (LIST then
// WATCH). Each time: the informer syncs to exactly the tenant's three spaces (one bound to the user, one to its group,
// one to be revoked); kube-apiserver is restarted with tests/controlplane/restart.sh; as soon as it is down, the admin
// makes a grant (a new namespace with a RoleBinding to the tenant) and a revocation (deletes one of the tenant's
// bindings), retrying until kube-apiserver accepts them; then, within a deadline, the store holds exactly the
// expected spaces (the grant in, the revoked one out, nothing else) and stays so. Whether the reflector resumed its
// watch from its last resourceVersion or relisted is logged, with every request it made, not asserted.
//
// The feature gate is process-wide, so the two settings run one after the other. kube-apiserver is left healthy
// (restart.sh start) whatever happens.
func TestInformerStaysCorrectAcrossKubeApiserverRestart(t *testing.T) {
	e := testEnv(t)
	for _, watchList := range []bool{true, false} {
		t.Run(fmt.Sprintf("WatchListClient=%v", watchList), func(t *testing.T) {
			clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, watchList)
			if got := clientfeatures.FeatureGates().Enabled(clientfeatures.WatchListClient); got != watchList {
				t.Fatalf("WatchListClient is %v; want %v", got, watchList)
			}
			informerAcrossRestart(t, e, watchList)
		})
	}
}

func informerAcrossRestart(t *testing.T, e *env, watchList bool) {
	ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
	defer cancel()
	clk := e2eenv.Clock{Start: time.Now()}

	tn := e.newTenant("inf")
	byUser, _ := e.namespaceWithGrant(t, ctx, "a", tn.UserSubject())
	byGroup, _ := e.namespaceWithGrant(t, ctx, "b", tn.GroupSubject())
	revoked, revokedBinding := e.namespaceWithGrant(t, ctx, "revoked", tn.UserSubject())
	// The grant made while kube-apiserver restarts: a namespace made then, and a binding in it. Its deletion is
	// registered now, before the cleanup that brings kube-apiserver back, so that it runs after that one.
	granted, grantedBinding := name("granted"), name("view")
	e.deleteNamespaceWhenDone(t, granted)
	before := e2eenv.Sorted(byUser, byGroup, revoked)
	after := e2eenv.Sorted(byUser, byGroup, granted)
	waitForList(t, ctx, tn, before)

	cfg := tn.Config()
	rec := &e2eenv.Recorder{Clock: clk}
	rec.Record(cfg)
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	informer := dynamicinformer.NewDynamicSharedInformerFactory(client, 0).ForResource(spacesGVR).Informer()
	events := &journal{clock: clk}
	watchErrs := &journal{clock: clk}
	if err := informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		watchErrs.add("%v", err)
	}); err != nil {
		t.Fatal(err)
	}
	keyOf := func(obj any) string {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			return fmt.Sprintf("<%v>", err)
		}
		return key
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { events.add("add %s", keyOf(obj)) },
		UpdateFunc: func(old, obj any) {
			events.add("update %s (rv %s -> %s)", keyOf(obj), rvOf(old), rvOf(obj))
		},
		DeleteFunc: func(obj any) {
			_, unknown := obj.(cache.DeletedFinalStateUnknown)
			events.add("delete %s (final state unknown: %v)", keyOf(obj), unknown)
		},
	}); err != nil {
		t.Fatal(err)
	}
	informerCtx, stop := context.WithCancel(ctx)
	var informerDone sync.WaitGroup
	informerDone.Go(func() { informer.RunWithContext(informerCtx) })
	defer func() {
		stop()
		informerDone.Wait()
	}()
	storeNames := func() []string { return e2eenv.Sorted(informer.GetStore().ListKeys()...) }

	syncCtx, cancelSync := context.WithTimeout(ctx, propagation)
	defer cancelSync()
	if !cache.WaitForCacheSync(syncCtx.Done(), informer.HasSynced) {
		t.Fatalf("HasSynced not true within %v; store %q; watch errors:%s; requests:%s", propagation, storeNames(),
			watchErrs, rec)
	}
	if got := storeNames(); !slices.Equal(got, before) {
		t.Fatalf("after sync the store holds %q; want exactly %q; requests:%s", got, before, rec)
	}
	// The restart should cut an established watch, not race the reflector's first one.
	waitFor(t, ctx, 10*time.Second, "the reflector's watch is established", func() (bool, string) {
		return len(rec.Matching(func(x e2eenv.Exchange) bool { return x.IsSpaces() && x.IsWatch() && x.Status == 200 })) > 0, rec.String()
	})
	syncedRV := informer.LastSyncResourceVersion()
	requestsBefore := len(rec.Matching(func(e2eenv.Exchange) bool { return true }))
	t.Logf("+%v synced at resourceVersion %s to %q with requests:%s", clk.Since(), syncedRV, before, rec)

	// Restart kube-apiserver. From here on, whatever happens, it is brought back before anything else is cleaned up:
	// first the script is waited for (so two never run at once), then `restart.sh start` starts it if it is down and
	// waits for it to be healthy.
	logOffset := e.serverLogSize()
	script := &journal{clock: clk}
	stopped := make(chan struct{})
	var stoppedOnce sync.Once
	restarting, err := e.runRestartScript(func(line string) {
		script.add("%s", line)
		if strings.Contains(line, "stopped kube-apiserver") || strings.Contains(line, "kube-apiserver is not running") {
			stoppedOnce.Do(func() { close(stopped) })
		}
	})
	if err != nil {
		t.Fatalf("running %s: %v", e.restartScript, err)
	}
	t.Cleanup(func() { ensureKubeApiserver(t, e, restarting) })
	restartStarted := clk.Since()

	select {
	case <-stopped:
	case <-restarting.done:
		t.Fatalf("restart.sh exited (%v) before it stopped kube-apiserver; output:%s", restarting.err, script)
	case <-ctx.Done():
		t.Fatalf("restart.sh did not stop kube-apiserver in time; output:%s", script)
	}
	stoppedAt := clk.Since()

	// The grant and the revocation, as soon as kube-apiserver takes writes again.
	writes := &journal{clock: clk}
	attempts := 0
	write := func(what string, f func(context.Context) error) {
		t.Helper()
		n := 0
		err := retry(ctx, writeTimeout, func(ctx context.Context) error {
			n++
			return f(ctx)
		})
		attempts += n
		if err != nil {
			t.Fatalf("%s: %v (%d attempts); restart.sh output:%s", what, err, n, script)
		}
		healthy := "restart.sh still waiting for health"
		select {
		case <-restarting.done:
			healthy = "restart.sh done"
		default:
		}
		writes.add("%s accepted after %d attempts (%s)", what, n, healthy)
	}
	// An attempt whose answer was lost may have been applied: AlreadyExists and NotFound then mean done.
	write("create namespace "+granted, func(ctx context.Context) error {
		if err := e.createNamespace(ctx, granted); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		return nil
	})
	write("grant: create RoleBinding "+granted+"/"+grantedBinding, func(ctx context.Context) error {
		if err := e.createBinding(ctx, granted, grantedBinding, tn.UserSubject()); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		return nil
	})
	first := true
	write("revocation: delete RoleBinding "+revoked+"/"+revokedBinding, func(ctx context.Context) error {
		err := e.kube.RbacV1().RoleBindings(revoked).Delete(ctx, revokedBinding, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) && !first {
			err = nil
		}
		first = false
		return err
	})
	writesDone := clk.Since()

	select {
	case <-restarting.done:
	case <-ctx.Done():
		t.Fatalf("restart.sh did not finish in time; output:%s", script)
	}
	if restarting.err != nil {
		t.Fatalf("restart.sh failed: %v; output:%s", restarting.err, script)
	}
	healthyAt := clk.Since()
	t.Logf("+%v restart.sh started; kube-apiserver stopped +%v; writes in +%v (%d attempts in all):%s\nrestart.sh done (healthy) +%v; output:%s",
		restartStarted, stoppedAt, writesDone, attempts, writes, healthyAt, script)

	// The store must become exactly `after` within the deadline, without the informer being restarted, and stay so.
	diagnose := func() string {
		return fmt.Sprintf("\nthe tenant's own list now: %s\nLastSyncResourceVersion: %s (at sync %s)\nhandler events:%s\nwatch errors:%s\nrequests:%s\ntenancy-apiserver.log since the restart:%s",
			tenantList(ctx, tn), informer.LastSyncResourceVersion(), syncedRV, events, watchErrs, rec,
			e.serverLogFrom(logOffset, 120))
	}
	deadline := time.Now().Add(convergence)
	for !slices.Equal(storeNames(), after) {
		if time.Now().After(deadline) {
			t.Fatalf("%v after kube-apiserver was healthy again, the informer's store holds %q; want exactly %q (lost: %q, phantom: %q)%s",
				convergence, storeNames(), after, missing(storeNames(), after), missing(after, storeNames()), diagnose())
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the case ran out of time; store %q, want %q%s", storeNames(), after, diagnose())
		case <-time.After(100 * time.Millisecond):
		}
	}
	exactAt := clk.Since()
	for end := time.Now().Add(settle); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got := storeNames(); !slices.Equal(got, after) {
			t.Fatalf("the store was exact (%q) at +%v but then held %q at +%v (lost: %q, phantom: %q)%s",
				after, exactAt, got, clk.Since(), missing(got, after), missing(after, got), diagnose())
		}
	}

	// How the reflector got there: the requests it made from the restart on.
	since := rec.Matching(func(e2eenv.Exchange) bool { return true })[requestsBefore:]
	var relists, resumes, failed []string
	for _, x := range since {
		switch {
		case !x.IsSpaces():
		case !x.IsWatch():
			relists = append(relists, "LIST "+x.String())
		case x.Values().Get("sendInitialEvents") == "true":
			relists = append(relists, "WatchList "+x.String())
		case x.Err != nil || x.Status != 200:
			failed = append(failed, x.String())
		default:
			resumes = append(resumes, fmt.Sprintf("from resourceVersion %s: %s", x.Values().Get("resourceVersion"), x))
		}
	}
	verdict := "resumed its watch without relisting"
	if len(relists) > 0 {
		verdict = fmt.Sprintf("relisted (%d times)", len(relists))
	}
	t.Logf("RESULT WatchListClient=%v: store exact %q at +%v (%v after kube-apiserver was healthy, %v after the writes); the reflector %s",
		watchList, after, exactAt, exactAt-healthyAt, exactAt-writesDone, verdict)
	t.Logf("relists:%s\nsuccessful resumed watches:%s\nfailed watch attempts:%s\nwatch errors:%s\nhandler events:%s\nLastSyncResourceVersion %s (at sync %s)\nall requests:%s",
		lines(relists), lines(resumes), lines(failed), watchErrs, events, informer.LastSyncResourceVersion(), syncedRV, rec)
	t.Logf("tenancy-apiserver.log since the restart, warnings and errors by kind:%s", e.serverLogSummary(logOffset))
}

// ensureKubeApiserver waits for a restart.sh run to end, then runs `restart.sh start`, which starts kube-apiserver if
// it is down and waits until it is healthy.
func ensureKubeApiserver(t *testing.T, e *env, running *controlPlaneScript) {
	select {
	case <-running.done:
	case <-time.After(3 * time.Minute):
		t.Errorf("restart.sh has not ended after 3 minutes; starting kube-apiserver anyway")
	}
	out := &journal{clock: e2eenv.Clock{Start: time.Now()}}
	s, err := e.runRestartScript(func(line string) { out.add("%s", line) }, "start")
	if err != nil {
		t.Errorf("cleanup: running restart.sh start: %v", err)
		return
	}
	<-s.done
	if s.err != nil {
		t.Errorf("cleanup: restart.sh start failed (%v): kube-apiserver may be left down; output:%s", s.err, out)
	}
}

// waitForList waits until the tenant's own list of spaces is exactly want.
func waitForList(t *testing.T, ctx context.Context, tn *tenant, want []string) {
	t.Helper()
	waitFor(t, ctx, propagation, "the tenant lists exactly its spaces", func() (bool, string) {
		got := tenantList(ctx, tn)
		return got == fmt.Sprintf("%q", want), fmt.Sprintf("%s, want %q", got, want)
	})
}

// tenantList is the tenant's own list of spaces right now, as %q of the sorted names or the error.
func tenantList(ctx context.Context, tn *tenant) string {
	client, err := metadata.NewForConfig(tn.Config())
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := client.Resource(spacesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "error: " + err.Error()
	}
	var names []string
	for _, item := range list.Items {
		names = append(names, item.Name)
	}
	return fmt.Sprintf("%q", e2eenv.Sorted(names...))
}

// waitFor polls check until it reports ok, or fails the test after timeout with what check saw last.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last saw: %s", what, timeout, seen)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: the case ran out of time; last saw: %s", what, seen)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// missing returns the names in want that are not in got.
func missing(got, want []string) []string {
	var out []string
	for _, n := range want {
		if !slices.Contains(got, n) {
			out = append(out, n)
		}
	}
	return out
}

func lines(items []string) string {
	if len(items) == 0 {
		return " (none)"
	}
	return "\n  " + strings.Join(items, "\n  ")
}

func rvOf(obj any) string {
	if m, ok := obj.(metav1.Object); ok {
		return m.GetResourceVersion()
	}
	return "?"
}
