// Command soak is a bounded soak of tenancy-apiserver through kube-apiserver on loopback: a few hundred namespaces
// granted to impersonated tenants, W long-lived watches run like reflectors, and a mixed load of lists (plain, with
// label selectors, paged), gets (visible and not), labels, and creates and deletes by an Account's members, from a
// fixed number of workers until the deadline. It samples the RSS of the server and of kube-apiserver, cleans up what
// it made, prints a report and ends with `soak: N passed, M failed`; it exits non-zero when M > 0.
//
//	bash tests/env/up.sh /tmp/soak-env
//	cd tests/clientgo && TENANCY_E2E_ENV=/tmp/soak-env/env GOTOOLCHAIN=local go run ./cmd/soak -duration 40s -watches 200
//	bash tests/controlplane/down.sh /tmp/soak-env
//
// tests/run.sh runs a short soak against its environment; benches/soak.sh runs the full one (5m, 1000 watches) on
// a release build.
//
// The checks:
//   - no 5xx: no response with a 5xx status, as the transport saw them (client-go retries included);
//   - no transport errors: every request got an HTTP answer within 30 s;
//   - answers as specified: every status is the one the semantics call for (200/201; 404 for a space the caller
//     does not see or that does not exist; 403 for a viewer's change; 409 for a taken name; 422 for a server-owned
//     label), every list shows exactly the run's spaces its caller sees (selectors and pages included), pages are
//     full, and watch events come in increasing resourceVersion order. A 409 Conflict or a 429 TooManyRequests (after
//     client-go-like retries) where success was due is reported as a retryable refusal, not failed: a client retries
//     it and nothing the server keeps is wrong;
//   - all watches opened, and every watch re-established after each close (the server's timeoutSeconds, an early
//     end, 410 Gone then a new list) — none given up after repeated failures;
//   - watch streams clean: no ERROR event other than 410, no broken stream, none left open past its timeoutSeconds;
//   - watch caches agree: once the load stops, every watcher's store equals a fresh list of its user's spaces;
//   - server RSS reaches a plateau: over the second half of the load, RSS grows by at most -rss-growth-limit-mb
//     (10 MB): the mean of the last quarter of the load's samples exceeds that of the third quarter by no more. The
//     first half is where the server grows to its steady state. What grows there is the server's change log: it keeps
//     the last 10,000 changes, each with its snapshot of the namespaces (structurally shared), and the load writes
//     50-150 changes a second; the soak fills it first (-warmup-changes: 11,000 namespace labels by the admin, before
//     the watches open), and what still grows is the difference between a load entry and a warm-up entry as the
//     load's replace the warm-up's. The cluster must keep its size too, or the server grows with it: creators wait
//     while -max-terminating of their spaces are still being deleted. A 15-minute run (benches/soak.sh) measured
//     +0.2 MB over its second half; a leak of 100 bytes per request (~50,000 lie in the second half) or of a few KB
//     per watch reopen goes past 10 MB;
//   - the run was not interrupted, and the server is alive at the end.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	duration       time.Duration
	watches        int
	workers        int
	namespaces     int
	viewers        int
	creators       int
	maxTerminating int
	labelable      int
	watchTimeout   time.Duration
	rssInterval    time.Duration
	rssLimitMB     int64
	warmup         int
	seed           uint64
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "how long the mixed load runs (setup and cleanup come on top)")
	flag.IntVar(&o.watches, "watches", 1000, "long-lived watches kept open during the load")
	flag.IntVar(&o.workers, "workers", 8, "concurrent request loops")
	flag.IntVar(&o.namespaces, "namespaces", 300, "namespaces made for the run")
	flag.IntVar(&o.viewers, "viewers", 50, "impersonated users granted view in some of them")
	flag.IntVar(&o.creators, "creators", 8, "impersonated members of the run's Account")
	flag.IntVar(&o.maxTerminating, "max-terminating", 100, "creators wait (up to 10 s) while this many of the account's "+
		"spaces are still being deleted, so the cluster stays the same size (0: never wait)")
	flag.IntVar(&o.labelable, "labelable", 60, "namespaces the creators may label (the first ones)")
	flag.DurationVar(&o.watchTimeout, "watch-timeout", 0, "each watch asks for a timeoutSeconds in [T, 2T); 0: duration/4, within [10s, 5m]")
	flag.DurationVar(&o.rssInterval, "rss-interval", 2*time.Second, "RSS sampling period")
	flag.Int64Var(&o.rssLimitMB, "rss-growth-limit-mb", 10, "largest RSS growth (MB) over the second half of the load (third quarter to last quarter)")
	flag.IntVar(&o.warmup, "warmup-changes", 11000, "namespace changes made before the load to fill the server's change "+
		"log (it keeps 10,000), so that its filling is not taken for a leak; 0: none")
	flag.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock)")
	flag.Parse()
	if o.duration <= 0 || o.watches < 0 || o.workers <= 0 || o.viewers < 10 || o.creators <= 0 ||
		o.namespaces < 20 || o.labelable <= 0 || o.labelable > o.namespaces || o.warmup < 0 {
		fmt.Fprintln(os.Stderr, "soak: bad flags (need duration > 0, workers > 0, viewers >= 10, creators > 0, namespaces >= 20, 0 < labelable <= namespaces)")
		os.Exit(2)
	}
	if o.watchTimeout == 0 {
		o.watchTimeout = min(5*time.Minute, max(10*time.Second, o.duration/4))
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	os.Exit(run(o))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
}

func loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

func run(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := loadEnv()
	if err != nil {
		logf("%v", err)
		return 1
	}
	server, err := newSeries(e.vars["PID_DIR"], "tenancy-apiserver")
	if err != nil {
		logf("the server's pid: %v", err)
		return 1
	}
	// kube-apiserver's RSS is shown beside the server's, for scale; without it the soak goes on.
	series := []*rssSeries{server}
	if apiserver, err := newSeries(e.vars["PID_DIR"], "kube-apiserver"); err != nil {
		logf("not sampling kube-apiserver's RSS: %v", err)
	} else {
		series = append(series, apiserver)
	}
	samplingCtx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	var sampling sync.WaitGroup
	for _, one := range series {
		sampling.Go(func() { one.sampleEvery(samplingCtx, o.rssInterval) })
	}
	loadBefore := loadavg()

	r := rand.New(rand.NewPCG(o.seed, 0))
	runID := fmt.Sprintf("%04x", r.Uint32()&0xffff)
	w := newWorld(runID, o.namespaces, o.viewers, o.creators, o.labelable)
	s := &soak{e: e, w: w, base: e.vars["APISERVER_URL"], rec: newRecorder(), statuses: &statusCounter{}, workers: o.workers,
		maxTerminating: int64(o.maxTerminating)}
	for _, u := range append(slices.Clone(w.viewers), w.creators...) {
		if u.http, err = e.httpClient(u.name, u.groups, s.statuses); err != nil {
			logf("%v", err)
			return 1
		}
	}

	logf("run %s (seed %d): %d namespaces, %d viewers, %d creators, %d watches, %d workers, %v of load; load average %s",
		runID, o.seed, o.namespaces, o.viewers, o.creators, o.watches, o.workers, o.duration, loadBefore)
	setupStart := time.Now()
	var cleanupProblems []string
	cleaned := false
	cleanup := func() {
		if !cleaned {
			cleaned = true
			logf("cleaning up")
			cleanupProblems = w.destroy(e)
			for _, problem := range cleanupProblems {
				logf("cleanup: %s", problem)
			}
		}
	}
	defer cleanup()
	setupCtx, cancelSetup := context.WithTimeout(ctx, 5*time.Minute)
	err = w.create(setupCtx, e)
	cancelSetup()
	if err != nil {
		logf("setup failed: %v", err)
		return 1
	}
	logf("made %d namespaces and the Account %s in %v; waiting for every tenant's view", o.namespaces, w.account,
		time.Since(setupStart).Round(time.Millisecond))
	if problem := s.waitForViews(ctx, 2*time.Minute); problem != "" {
		logf("setup failed: %s", problem)
		return 1
	}

	if o.warmup > 0 {
		warmStart := time.Now()
		warmCtx, cancelWarm := context.WithTimeout(ctx, 10*time.Minute)
		err := w.warmUp(warmCtx, e, o.warmup)
		cancelWarm()
		if err != nil {
			logf("warm-up failed: %v", err)
			return 1
		}
		took := time.Since(warmStart)
		logf("warm-up: %d namespace changes in %v (%.0f/s) to fill the server's change log", o.warmup,
			took.Round(time.Millisecond), float64(o.warmup)/took.Seconds())
	}

	// The watches, opened a few at a time so that their first lists do not all land at once.
	stats := &watchStats{}
	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	var (
		watchers []*watcher
		running  sync.WaitGroup
		slots    = make(chan struct{}, 16)
	)
	openStart := time.Now()
	for k := range o.watches {
		u := w.viewers[k%len(w.viewers)]
		if k%10 == 9 {
			u = w.creators[(k/10)%len(w.creators)]
		}
		wt := &watcher{s: s, u: u, id: k, timeout: o.watchTimeout, stats: stats}
		watchers = append(watchers, wt)
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wr := rand.New(rand.NewPCG(o.seed, uint64(1000+k)))
		running.Go(func() { wt.run(watchCtx, wr, func() { <-slots }) })
	}
	for range cap(slots) {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
	}
	logf("%d of %d watches open in %v (timeoutSeconds in [%v, %v)); load for %v",
		stats.initial.Load(), o.watches, time.Since(openStart).Round(time.Millisecond), o.watchTimeout, 2*o.watchTimeout, o.duration)

	for _, one := range series {
		one.sample()
	}
	loadStart, before := time.Now(), s.rec.total()
	s.load(ctx, loadStart.Add(o.duration), o.seed)
	loadEnd, during := time.Now(), s.rec.total()-before
	loadAfter := loadavg()
	logf("load done after %v; waiting for the watch caches to agree with lists", loadEnd.Sub(loadStart).Round(time.Millisecond))
	// The spaces the creators deleted stay (Terminating) until kube-controller-manager has emptied their namespaces;
	// the comparison waits for that first, so that it is not made against a world still changing.
	settleStart := time.Now()
	left, settleErr := w.waitForDeletions(ctx, e, 3*time.Minute)
	settleTook := time.Since(settleStart)
	if settleErr != nil {
		logf("%d of the account's spaces still there after %v: %v", left, settleTook.Round(time.Second), settleErr)
	}
	convergeStart := time.Now()
	var diverged []string
	if ctx.Err() == nil {
		diverged = s.converge(watchers, time.Minute)
	}
	convergeTook := time.Since(convergeStart)
	stopWatches()
	running.Wait()
	server.sample()
	stopSampling()
	sampling.Wait()
	_, serverErr := vmRSS(server.pid)
	cleanup()

	// --- the report ---
	elapsed := loadEnd.Sub(loadStart)
	var out strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }
	p("soak report (run %s, seed %d)", runID, o.seed)
	warm := ""
	if o.warmup > 0 {
		warm = fmt.Sprintf(" (a warm-up of %d namespace changes included)", o.warmup)
	}
	p("  load: %v (asked %v) with %d workers; setup %v%s; %d namespaces, %d viewers, %d creators; load average %s before, %s after",
		elapsed.Round(time.Millisecond), o.duration, o.workers, loadStart.Sub(setupStart).Round(time.Millisecond), warm,
		o.namespaces, o.viewers, o.creators, loadBefore, loadAfter)
	p("  requests during the load: %d (%.1f/s, watch opens and relists included); in all: %d", during,
		float64(during)/elapsed.Seconds(), s.rec.total())
	out.WriteString(s.rec.table(verbOrder))
	codes := s.statuses.snapshot()
	var codeList []string
	fiveXX, responses := 0, 0
	for _, code := range slices.Sorted(maps.Keys(codes)) {
		codeList = append(codeList, fmt.Sprintf("%d:%d", code, codes[code]))
		responses += codes[code]
		if code >= 500 {
			fiveXX += codes[code]
		}
	}
	p("  http responses seen by the transport: %d (%s); 5xx: %d; 429: %d", responses, strings.Join(codeList, " "), fiveXX, codes[429])
	p("  transport errors: %d; unexpected answers: %d; retryable refusals (409/429 where success was due; reported, not failed): %d; reads of a space still marked %s right after its create: %d",
		s.rec.count("transport"), s.rec.count("unexpected"), s.rec.count("retryable"), creatingAnnotation, s.rec.count("stale-read"))
	p("  watches: %d asked, %d opened, %d re-established (%d lists after 410 Gone); closed: %d at timeoutSeconds, %d early, %d overdue, %d broken streams; %d ERROR events (not 410); %d failed opens or lists (retried); %d could not be re-established",
		o.watches, stats.initial.Load(), stats.reopened.Load(), stats.relists.Load(), stats.timeoutCloses.Load(),
		stats.earlyCloses.Load(), stats.overdue.Load(), stats.streamErrors.Load(), stats.errorEvents.Load(),
		stats.openFailures.Load(), stats.gaveUp.Load())
	events := stats.added.Load() + stats.modified.Load() + stats.deleted.Load()
	p("  events received: %d (ADDED %d, MODIFIED %d, DELETED %d) and %d bookmarks",
		events, stats.added.Load(), stats.modified.Load(), stats.deleted.Load(), stats.bookmarks.Load())
	p("  watch caches differing from a fresh list after the load: %d of %d (compared for %v, after %v for the deleted spaces' namespaces to go; %d left)",
		len(diverged), len(watchers), convergeTook.Round(time.Millisecond), settleTook.Round(time.Millisecond), left)
	windows := map[*rssSeries]rssWindow{}
	for _, one := range series {
		win := one.window(loadStart, loadEnd)
		windows[one] = win
		p("  rss %s (pid %d): before setup %s, load start %s; during the load (%d samples): first %s, min %s, max %s, last %s; mean of first third %s, of last third %s: growth %s; over the second half: %s to %s, %s",
			one.name, one.pid, mb(win.baseline), mb(win.before), win.n, mb(win.first), mb(win.min), mb(win.max),
			mb(win.last), mb(win.firstThird), mb(win.lastThird), signedMB(win.growth),
			mb(win.thirdQuarter), mb(win.lastQuarter), signedMB(win.lastHalfGrowth))
		p("    over the load: %s", traceMB(win.trace))
	}
	for _, kind := range []string{"5xx", "transport", "unexpected", "retryable", "stale-read", "watch-lost", "watch-error", "watch-stream", "watch-overdue", "watch-early"} {
		for _, example := range s.rec.examplesOf(kind) {
			p("  %s: %s", kind, example)
		}
	}
	for _, d := range diverged[:min(len(diverged), maxExamples)] {
		p("  diverged: %s", d)
	}

	if len(cleanupProblems) == 0 {
		p("  cleanup: the run's namespaces, spaces and Account deleted")
	} else {
		p("  cleanup: %d problems (see above)", len(cleanupProblems))
	}

	type check struct {
		name string
		ok   bool
		why  string
	}
	win := windows[server]
	checks := []check{
		{"no 5xx", fiveXX == 0 && s.rec.count("5xx") == 0, fmt.Sprintf("%d responses with a 5xx status", fiveXX)},
		{"no transport errors", s.rec.count("transport") == 0, fmt.Sprintf("%d requests without an answer", s.rec.count("transport"))},
		{"answers as specified", s.rec.count("unexpected") == 0, fmt.Sprintf("%d unexpected answers", s.rec.count("unexpected"))},
		{"all watches opened", stats.initial.Load() == int64(o.watches), fmt.Sprintf("%d of %d", stats.initial.Load(), o.watches)},
		{"every watch re-established", stats.gaveUp.Load() == 0, fmt.Sprintf("%d watchers gave up", stats.gaveUp.Load())},
		{"watch streams clean", stats.errorEvents.Load()+stats.streamErrors.Load()+stats.overdue.Load() == 0,
			fmt.Sprintf("%d ERROR events, %d broken streams, %d overdue", stats.errorEvents.Load(), stats.streamErrors.Load(), stats.overdue.Load())},
		{"watch caches agree with lists", len(diverged) == 0, fmt.Sprintf("%d watchers differ", len(diverged))},
		{"server RSS reaches a plateau", win.n >= 4 && win.lastHalfGrowth <= o.rssLimitMB<<20,
			fmt.Sprintf("growth %s over the second half of the load, %d samples (limit %d MB, at least 4 samples)",
				signedMB(win.lastHalfGrowth), win.n, o.rssLimitMB)},
		{"server alive at the end", serverErr == nil, fmt.Sprint(serverErr)},
		{"ran to the end", ctx.Err() == nil, "interrupted"},
	}
	passed, failed := 0, 0
	for _, c := range checks {
		if c.ok {
			passed++
			p("  ok   %s", c.name)
		} else {
			failed++
			p("  FAIL %s: %s", c.name, c.why)
		}
	}
	p("soak: %d passed, %d failed", passed, failed)
	fmt.Print(out.String())
	if failed > 0 {
		return 1
	}
	return 0
}

// waitForViews waits until every viewer and every creator lists exactly the run's namespaces it should see: the
// server learns the new namespaces and RoleBindings from its watches.
func (s *soak) waitForViews(ctx context.Context, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	pending := append(slices.Clone(s.w.viewers), s.w.creators...)
	last := ""
	for len(pending) > 0 {
		var still []*user
		for _, u := range pending {
			a := s.call(u, "setup-list", "GET", spacesPath, nil, nil, "")
			var list listBody
			if a.err != nil || a.status != 200 {
				last = fmt.Sprintf("%s -> %d %v %s", a.req, a.status, a.err, clip(a.body))
				still = append(still, u)
				continue
			}
			if err := json.Unmarshal(a.body, &list); err != nil {
				last = fmt.Sprintf("%s: %v", a.req, err)
				still = append(still, u)
				continue
			}
			if got := s.runNames(list.Items); !slices.Equal(got, u.visible) {
				last = fmt.Sprintf("%s shows %d of the run's spaces, want %d", u.name, len(got), len(u.visible))
				still = append(still, u)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Sprintf("%d tenants still do not see their spaces after %v; last: %s", len(pending), timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return ""
}
