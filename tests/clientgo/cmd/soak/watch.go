package main

// Long-lived watches, each run like a client-go reflector: list, then watch from the list's resourceVersion with
// bookmarks and a timeoutSeconds of its own; when the watch ends, watch again from the last resourceVersion seen
// (an event's or a bookmark's); on 410 Gone, list again. Each keeps the store a reflector would (name -> the label
// the creators change), which must agree with a fresh list once the load stops.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// How long past its timeoutSeconds a watch may stay open before the client gives up on it (counted as overdue).
	watchGrace = 20 * time.Second
	// Consecutive failures to list or to open a watch after which a watcher gives up (counted as not re-established).
	maxWatchFailures = 6
)

type watchStats struct {
	initial       atomic.Int64 // first opens
	reopened      atomic.Int64 // re-established after a close, from the last resourceVersion
	relists       atomic.Int64 // lists after 410 Gone
	timeoutCloses atomic.Int64 // closed by the server at timeoutSeconds
	earlyCloses   atomic.Int64 // closed cleanly before timeoutSeconds
	overdue       atomic.Int64 // still open watchGrace after timeoutSeconds
	streamErrors  atomic.Int64 // the stream broke (not a clean end)
	gone          atomic.Int64 // 410 Gone, on open or as an ERROR event
	errorEvents   atomic.Int64 // ERROR events other than 410
	openFailures  atomic.Int64 // failed lists or opens (retried)
	gaveUp        atomic.Int64 // watchers that could not re-establish their watch
	added         atomic.Int64
	modified      atomic.Int64
	deleted       atomic.Int64
	bookmarks     atomic.Int64
}

type watcher struct {
	s       *soak
	u       *user
	id      int
	timeout time.Duration // the mean timeoutSeconds; each watch draws from [timeout, 2*timeout)
	stats   *watchStats

	mu      sync.Mutex
	store   map[string]string // name -> the tick label ("" without one)
	rv      string
	stopped bool // gave up
}

type watchEvent struct {
	Type   string `json:"type"`
	Object struct {
		Metadata struct {
			Name            string            `json:"name"`
			ResourceVersion string            `json:"resourceVersion"`
			Labels          map[string]string `json:"labels"`
		} `json:"metadata"`
		// Set when the object is a Status (ERROR events).
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"object"`
}

// relist replaces the store with a fresh list, as a reflector does at start and after 410.
func (wt *watcher) relist() bool {
	a := wt.s.call(wt.u, "watch-list", http.MethodGet, spacesPath, nil, nil, "")
	if !wt.s.expect(a, http.StatusOK) {
		return false
	}
	var list listBody
	if err := json.Unmarshal(a.body, &list); err != nil || list.Metadata.ResourceVersion == "" {
		wt.s.rec.note("unexpected", fmt.Sprintf("%s -> 200 without a usable list (%v): %s", a.req, err, clip(a.body)))
		return false
	}
	store := map[string]string{}
	for _, item := range list.Items {
		store[item.Metadata.Name] = item.Metadata.Labels[tickLabel]
	}
	wt.mu.Lock()
	wt.store, wt.rv = store, list.Metadata.ResourceVersion
	wt.mu.Unlock()
	return true
}

// run keeps the watch open until ctx ends. opened is called once, after the first watch is open (or the watcher has
// given up), so that the caller can open the watches a few at a time.
func (wt *watcher) run(ctx context.Context, r *rand.Rand, opened func()) {
	var once sync.Once
	defer once.Do(opened)
	needList, failures, first := true, 0, true
	fail := func(what string) bool { // false: give up
		failures++
		wt.stats.openFailures.Add(1)
		if failures >= maxWatchFailures {
			wt.stats.gaveUp.Add(1)
			wt.s.rec.note("watch-lost", fmt.Sprintf("watcher %d (%s): gave up after %d consecutive failures; last: %s",
				wt.id, wt.u.name, failures, what))
			wt.mu.Lock()
			wt.stopped = true
			wt.mu.Unlock()
			return false
		}
		backoff := min(5*time.Second, 200*time.Millisecond<<failures)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		return true
	}
	for ctx.Err() == nil {
		if needList {
			if !wt.relist() {
				if !fail("list failed") {
					return
				}
				continue
			}
			needList = false
		}
		timeout := wt.timeout + time.Duration(r.Int64N(int64(wt.timeout)))
		timeout = timeout.Truncate(time.Second)
		outcome, detail := wt.watchOnce(ctx, timeout, func() {
			if first {
				wt.stats.initial.Add(1)
				first = false
				once.Do(opened)
			} else {
				wt.stats.reopened.Add(1)
			}
			failures = 0
		})
		switch outcome {
		case outcomeStop:
			return
		case outcomeGone:
			wt.stats.gone.Add(1)
			wt.stats.relists.Add(1)
			needList = true
		case outcomeOpenFailed:
			if !fail(detail) {
				return
			}
		case outcomeClosed:
			// Watch again from the last resourceVersion.
		}
	}
}

type outcome int

const (
	outcomeClosed outcome = iota
	outcomeGone
	outcomeOpenFailed
	outcomeStop
)

func (wt *watcher) watchOnce(ctx context.Context, timeout time.Duration, onOpen func()) (outcome, string) {
	wt.mu.Lock()
	rv := wt.rv
	wt.mu.Unlock()
	q := url.Values{
		"watch":               {"1"},
		"resourceVersion":     {rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(int(timeout.Seconds()))},
	}
	target := wt.s.base + spacesPath + "?" + q.Encode()
	desc := fmt.Sprintf("GET %s?%s as %s", spacesPath, q.Encode(), wt.u.name)
	wctx, cancel := context.WithTimeout(ctx, timeout+watchGrace)
	defer cancel()
	req, err := http.NewRequestWithContext(wctx, http.MethodGet, target, nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := wt.u.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return outcomeStop, ""
		}
		wt.s.rec.request("watch", time.Since(start), 0, err)
		wt.s.rec.note("transport", fmt.Sprintf("%s -> %v", desc, err))
		return outcomeOpenFailed, err.Error()
	}
	defer resp.Body.Close()
	wt.s.rec.request("watch", time.Since(start), resp.StatusCode, nil)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode == http.StatusGone {
			return outcomeGone, ""
		}
		a := answer{status: resp.StatusCode, body: body, req: desc}
		wt.s.expect(a, http.StatusOK)
		return outcomeOpenFailed, fmt.Sprintf("%d %s", resp.StatusCode, clip(body))
	}
	onOpen()
	last, _ := parsePosition(rv)
	decoder := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		err := decoder.Decode(&ev)
		if err != nil {
			elapsed := time.Since(start)
			switch {
			case ctx.Err() != nil:
				return outcomeStop, ""
			case wctx.Err() != nil:
				wt.stats.overdue.Add(1)
				wt.s.rec.note("watch-overdue", fmt.Sprintf("%s: still open %v after its timeoutSeconds", desc, watchGrace))
			case errors.Is(err, io.EOF) && elapsed >= timeout-time.Second:
				wt.stats.timeoutCloses.Add(1)
			case errors.Is(err, io.EOF):
				wt.stats.earlyCloses.Add(1)
				wt.s.rec.note("watch-early", fmt.Sprintf("%s: ended after %v", desc, elapsed.Round(time.Millisecond)))
			default:
				wt.stats.streamErrors.Add(1)
				wt.s.rec.note("watch-stream", fmt.Sprintf("%s: after %v: %v", desc, elapsed.Round(time.Millisecond), err))
			}
			return outcomeClosed, ""
		}
		meta := ev.Object.Metadata
		position, known := parsePosition(meta.ResourceVersion)
		switch ev.Type {
		case "ADDED", "MODIFIED", "DELETED":
			switch ev.Type {
			case "ADDED":
				wt.stats.added.Add(1)
			case "MODIFIED":
				wt.stats.modified.Add(1)
			default:
				wt.stats.deleted.Add(1)
			}
			// Every event has a position of its own, after everything the watcher has seen.
			if !known || !last.less(position) {
				wt.s.rec.note("unexpected", fmt.Sprintf("%s: %s %s at resourceVersion %q, not after %v",
					desc, ev.Type, meta.Name, meta.ResourceVersion, last))
			}
			wt.mu.Lock()
			if ev.Type == "DELETED" {
				delete(wt.store, meta.Name)
			} else {
				wt.store[meta.Name] = meta.Labels[tickLabel]
			}
			wt.rv = meta.ResourceVersion
			wt.mu.Unlock()
		case "BOOKMARK":
			wt.stats.bookmarks.Add(1)
			if !known || position.less(last) {
				wt.s.rec.note("unexpected", fmt.Sprintf("%s: BOOKMARK at resourceVersion %q, before %v",
					desc, meta.ResourceVersion, last))
			}
			wt.mu.Lock()
			wt.rv = meta.ResourceVersion
			wt.mu.Unlock()
		case "ERROR":
			if ev.Object.Code == http.StatusGone {
				return outcomeGone, ""
			}
			wt.stats.errorEvents.Add(1)
			wt.s.rec.note("watch-error", fmt.Sprintf("%s: ERROR event %d %s: %s", desc, ev.Object.Code,
				ev.Object.Reason, ev.Object.Message))
			return outcomeClosed, ""
		default:
			wt.s.rec.note("unexpected", fmt.Sprintf("%s: event of type %q", desc, ev.Type))
		}
		if known {
			if last.less(position) {
				last = position
			}
		}
	}
}

func (wt *watcher) snapshot() (map[string]string, bool) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return maps.Clone(wt.store), wt.stopped
}

// converge waits until every live watcher's store equals a fresh list of its user's spaces (names and the tick
// label), up to timeout; it returns the watchers that still differ, with one difference each.
func (s *soak) converge(watchers []*watcher, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		lists := map[*user]map[string]string{}
		var diverged []string
		for _, wt := range watchers {
			store, stopped := wt.snapshot()
			if stopped {
				continue
			}
			want, ok := lists[wt.u]
			if !ok {
				a := s.call(wt.u, "final-list", http.MethodGet, spacesPath, nil, nil, "")
				var list listBody
				if s.expect(a, http.StatusOK) && json.Unmarshal(a.body, &list) == nil {
					want = map[string]string{}
					for _, item := range list.Items {
						want[item.Metadata.Name] = item.Metadata.Labels[tickLabel]
					}
				}
				lists[wt.u] = want
			}
			if want == nil {
				diverged = append(diverged, fmt.Sprintf("watcher %d (%s): no list to compare with", wt.id, wt.u.name))
				continue
			}
			if diff := storeDiff(store, want); diff != "" {
				diverged = append(diverged, fmt.Sprintf("watcher %d (%s): %s", wt.id, wt.u.name, diff))
			}
		}
		if len(diverged) == 0 || time.Now().After(deadline) {
			return diverged
		}
		time.Sleep(time.Second)
	}
}

func storeDiff(got, want map[string]string) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if have, ok := got[name]; !ok {
			parts = append(parts, "missing "+name)
		} else if have != want[name] {
			parts = append(parts, fmt.Sprintf("%s has %s=%q, the list %q", name, tickLabel, have, want[name]))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			parts = append(parts, "extra "+name)
		}
	}
	if len(parts) > 4 {
		parts = append(parts[:4], fmt.Sprintf("and %d more", len(parts)-4))
	}
	return strings.Join(parts, "; ")
}

// position is a resourceVersion of the server's: every change through after, and (for an event inside one change that
// shows or hides several spaces) that next change's events through namespace through.
type position struct {
	after   uint64
	through string
}

func parsePosition(rv string) (position, bool) {
	head, name, inside := strings.Cut(rv, ".")
	n, err := strconv.ParseUint(head, 10, 64)
	switch {
	case err != nil:
		return position{}, false
	case !inside:
		return position{after: n}, true
	case name == "" || n == 0:
		return position{}, false
	default:
		return position{after: n - 1, through: name}, true
	}
}

// less orders positions as a watcher moves through them: P-1, then P.a, P.b, ..., then P.
func (p position) less(q position) bool {
	if p.after != q.after {
		return p.after < q.after
	}
	return p.through < q.through
}
