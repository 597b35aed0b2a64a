package main

// One run of watches: open them, prove them open end to end with a warm-up grant, time the grants, hold (with churn,
// optionally), and for unread watches see which ones were ended.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func (l *load) run(ctx context.Context, procs *procs) bool {
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ok := true

	start := time.Now()
	if err := l.prepare(ctx); err != nil {
		logf("listing failed: %v", err)
		return false
	}
	logf("opening %d %s watches (%d at a time, read=%v)", len(l.watches), l.o.resource, l.o.concurrency, l.o.read)
	opened, failures := l.openAll(watchCtx)
	logf("%d of %d watches open (200 received) in %v", opened, len(l.watches), time.Since(start).Round(time.Millisecond))
	if len(failures) > 0 {
		for _, err := range failures[:min(5, len(failures))] {
			logf("open failed: %v", err)
		}
		logf("%d watches did not open", len(failures))
		ok = false
	}
	defer l.closeAll(cancel)

	// The warm-up grant: every watch that is read must receive it, so all are open end to end before measuring.
	warm := l.grantBase + "0"
	if _, err := l.grant(ctx, warm); err != nil {
		logf("warm-up grant: %v", err)
		return false
	}
	if l.o.read {
		if missed := l.await(ctx, warm, opened); missed > 0 {
			logf("%d of %d watches did not receive the warm-up grant %s within %v", missed, opened, warm, l.o.grantTimeout)
			ok = false
		}
	}
	out("OPEN %d", opened)
	procs.print("open")
	if !ok {
		return false
	}

	if l.o.read && l.o.grants > 0 {
		if !l.timedGrants(ctx, opened) {
			ok = false
		}
		procs.print("grants")
	}

	if l.o.hold > 0 {
		out("HOLDING %v", l.o.hold)
		churnCtx, stopChurn := context.WithCancel(ctx)
		churned := make(chan int, 1)
		go func() { churned <- l.churn(churnCtx, warm) }()
		for held := time.Duration(0); held < l.o.hold; {
			step := min(l.o.sampleEvery, l.o.hold-held)
			if !sleepCtx(ctx, step) {
				break
			}
			held += step
			procs.print(fmt.Sprintf("hold+%ds", int(held.Seconds())))
			if n, _ := l.ended(); n > 0 {
				logf("%d watches ended while holding", n)
			}
		}
		stopChurn()
		if n := <-churned; n > 0 {
			out("CHURN %d labels of %s (each a MODIFIED for every watch)", n, warm)
		}
		procs.print("held")
	}

	if !l.o.read {
		open, ended, errorEvents, buffered := l.drainUnread(cancel)
		out("UNREAD watches=%d still_open=%d ended=%d ended_with_error_event=%d bytes_buffered=%d", opened, open,
			ended, errorEvents, buffered)
		if _, reasons := l.ended(); len(reasons) > 0 {
			logf("ended, e.g.: %s", strings.Join(reasons, "; "))
		}
		return ok
	}
	if n, reasons := l.ended(); n > 0 {
		logf("%d watches ended before the run closed them, e.g.: %s", n, strings.Join(reasons, "; "))
		ok = false
	}
	var events, bookmarks, bytes int64
	for _, w := range l.watches {
		events, bookmarks, bytes = events+w.events.Load(), bookmarks+w.bookmarks.Load(), bytes+w.bytes.Load()
	}
	out("STREAMS events=%d bookmarks=%d bytes=%d", events, bookmarks, bytes)
	return ok
}

// grant makes namespace name and (for spaces) grants view in it to all the groups; the returned time is taken just
// before the create that should reach the watches (the RoleBinding's, or the namespace's).
func (l *load) grant(ctx context.Context, name string) (time.Time, error) {
	kube := l.env.Kube
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"mem-grant": l.o.run}}}
	if l.o.resource == "namespaces" {
		start := time.Now()
		_, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
		return start, err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return time.Time{}, err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "mem-view", Namespace: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
	}
	for k := range l.o.groups {
		rb.Subjects = append(rb.Subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind,
			Name: fmt.Sprintf("%s%d", l.o.groupPrefix, k)})
	}
	start := time.Now()
	_, err := kube.RbacV1().RoleBindings(name).Create(ctx, rb, metav1.CreateOptions{})
	return start, err
}

// await waits until want watches received name's ADDED, up to o.grantTimeout; it returns how many did not.
func (l *load) await(ctx context.Context, name string, want int) int {
	deadline := time.Now().Add(l.o.grantTimeout)
	for {
		got := l.arrivals.count(name)
		if got >= want || time.Now().After(deadline) || !sleepCtx(ctx, 5*time.Millisecond) {
			return max(0, want-got)
		}
	}
}

func (l *load) timedGrants(ctx context.Context, opened int) bool {
	var all, creates []time.Duration
	missed := 0
	for k := 1; k <= l.o.grants && ctx.Err() == nil; k++ {
		name := fmt.Sprintf("%s%d", l.grantBase, k)
		start, err := l.grant(ctx, name)
		if err != nil {
			logf("grant %s: %v", name, err)
			return false
		}
		creates = append(creates, time.Since(start))
		l.await(ctx, name, opened)
		got := l.arrivals.latencies(name, start, l.o.grantTimeout)
		all = append(all, got...)
		missed += opened - len(got)
		p := percentiles(got)
		logf("grant %d/%d %s: %d of %d watches, p50 %s, max %s", k, l.o.grants, name, len(got), opened, ms(p.p50), ms(p.max))
		sleepCtx(ctx, l.o.grantEvery-time.Since(start))
	}
	p, c := percentiles(all), percentiles(creates)
	out("GRANTS resource=%s watches=%d grants=%d pairs=%d missed=%d p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s create_p50_ms=%s",
		l.o.resource, opened, l.o.grants, len(all), missed, ms(p.p50), ms(p.p90), ms(p.p99), ms(p.max), ms(c.p50))
	if missed > 0 {
		logf("%d (watch, grant) pairs missed their grant within %v", missed, l.o.grantTimeout)
		return false
	}
	return true
}

// churn labels name every o.churnEvery until ctx ends; it returns how many labels it made.
func (l *load) churn(ctx context.Context, name string) int {
	if l.o.churnEvery <= 0 {
		return 0
	}
	n := 0
	for sleepCtx(ctx, l.o.churnEvery) {
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{"mem-churn":"%d"}}}`, n)
		if _, err := l.env.Kube.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch,
			metav1.PatchOptions{}); err != nil {
			if ctx.Err() == nil {
				logf("churn: %v", err)
			}
			continue
		}
		n++
	}
	return n
}

type pcts struct{ p50, p90, p99, max time.Duration }

// percentiles by nearest rank.
func percentiles(ds []time.Duration) pcts {
	if len(ds) == 0 {
		return pcts{-1, -1, -1, -1}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return pcts{rank(0.50), rank(0.90), rank(0.99), s[len(s)-1]}
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}
