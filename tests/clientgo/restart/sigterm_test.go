package restart

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// SIGTERM as a rolling update sends it: a second server process is ready and kube-apiserver points at it, then the old
// one is terminated. A tenant's watch through kube-apiserver on the old process ends cleanly (the stream closes, no
// ERROR event), the tenant's next request succeeds on the new process, and no list in flight during either roll
// fails. Twice, so the run's server ends on its original port.
func TestSigtermEndsWatchesCleanlyAndNoRequestFailsDuringARoll(t *testing.T) {
	e := testEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tn := e.newTenant("term")
	ns, _ := e.namespaceWithGrant(t, ctx, "term", tn.UserSubject())
	waitForList(t, ctx, tn, []string{ns})
	client, err := dynamic.NewForConfig(tn.Config())
	if err != nil {
		t.Fatal(err)
	}
	spaces := client.Resource(spacesGVR)

	// Lists, one after another, for as long as the rolls take: none may fail.
	var lists, failures atomic.Int64
	var firstFailure sync.Once
	var failure string
	listing, stopListing := context.WithCancel(ctx)
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		for listing.Err() == nil {
			callCtx, callCancel := context.WithTimeout(ctx, 20*time.Second)
			_, err := spaces.List(callCtx, metav1.ListOptions{})
			callCancel()
			if listing.Err() != nil {
				return
			}
			lists.Add(1)
			if err != nil {
				failures.Add(1)
				firstFailure.Do(func() { failure = err.Error() })
			}
		}
	}()

	original := e.vars["SERVER_PORT"]
	for _, port := range []string{freePort(t), original} {
		w, err := spaces.Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("opening a watch before the roll to %s: %v", port, err)
		}
		// The initial ADDED of the tenant's space, so the stream is surely established on the old process.
		select {
		case event, ok := <-w.ResultChan():
			if !ok || event.Type != watch.Added {
				t.Fatalf("the first event before the roll to %s: %v %v", port, event.Type, ok)
			}
		case <-ctx.Done():
			t.Fatal("no first event")
		}
		e.rollTo(t, ctx, port)
		// The old process has exited: its watch stream must have ended, and without an ERROR event.
		ended := time.After(30 * time.Second)
	drain:
		for {
			select {
			case event, ok := <-w.ResultChan():
				if !ok {
					break drain
				}
				if event.Type == watch.Error {
					t.Fatalf("the watch ended with an ERROR event at the roll to %s: %v", port, event.Object)
				}
			case <-ended:
				t.Fatalf("the watch did not end within 30 s of the old process exiting (roll to %s)", port)
			}
		}
		w.Stop()
		// The next request is the new process's.
		list, err := spaces.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("the first list after the roll to %s: %v", port, err)
		}
		if len(list.Items) != 1 || list.Items[0].GetName() != ns {
			t.Fatalf("the first list after the roll to %s: %d items", port, len(list.Items))
		}
	}
	stopListing()
	<-listed
	if lists.Load() == 0 {
		t.Fatal("no list ran during the rolls")
	}
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d lists in flight during the rolls failed; the first: %s", n, lists.Load(), failure)
	}
	t.Logf("%d lists during two rolls, none failed", lists.Load())
}
