package main

// The mixed load: a fixed number of workers, each picking operations by weight until the deadline. Every request
// goes through kube-apiserver as an impersonated tenant; every answer is checked against what the semantics say it
// must be (status, and for lists the exact set of the run's names the caller sees).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	spacesPath = "/apis/tenancy.loft.sh/v1/spaces"
	// One request's deadline; past it the request counts as a transport error.
	requestTimeout = 30 * time.Second
	// A paged list that needs more pages than this is a failure of its own (a continue token that loops).
	maxPages = 200
	// Tries of one request answered 429 TooManyRequests.
	maxAttempts = 5
)

type soak struct {
	e        *env
	w        *world
	base     string
	rec      *recorder
	statuses *statusCounter
	workers  int
	seq      atomic.Int64 // names of created spaces, label values
	// terminating counts the account's spaces whose namespaces kube-controller-manager has not emptied yet; creators
	// wait while it is at maxTerminating (see waitForRoom).
	terminating    atomic.Int64
	maxTerminating int64
}

type answer struct {
	status int
	body   []byte
	err    error
	req    string // "METHOD path?query as user", for examples
}

// call makes one request as u and records it under verb. Its context is not the run's: a request in flight at the
// deadline finishes (or times out) and is counted.
func (s *soak) call(u *user, verb, method, path string, query url.Values, body []byte, contentType string) answer {
	target := s.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	a := answer{req: fmt.Sprintf("%s %s as %s", method, strings.TrimPrefix(target, s.base), u.name)}
	if body != nil {
		a.req += " body " + string(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	start := time.Now()
	// 429 TooManyRequests (kube-apiserver's priority and fairness, or the server's busy account Lease) is retried
	// after its Retry-After, as client-go does; the latency is the caller's, retries included.
	for attempt := 1; ; attempt++ {
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := u.http.Do(req)
		if err != nil {
			a.err = err
			break
		}
		a.status = resp.StatusCode
		a.body, a.err = io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if a.err != nil || a.status != http.StatusTooManyRequests || attempt == maxAttempts {
			break
		}
		wait := time.Second
		if seconds, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && seconds > 0 {
			wait = min(10*time.Second, time.Duration(seconds)*time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		if ctx.Err() != nil {
			a.err = ctx.Err()
			break
		}
	}
	s.rec.request(verb, time.Since(start), a.status, a.err)
	return a
}

// expect checks a's status against the allowed ones; anything else is noted with the exact request and answer.
// A 409 Conflict or a 429 TooManyRequests (after retries) where success was due is a refusal the client can retry,
// noted as such: nothing is wrong in what the server keeps, unlike a wrong answer.
func (s *soak) expect(a answer, allowed ...int) bool {
	success := slices.ContainsFunc(allowed, func(code int) bool { return code < 300 })
	switch {
	case a.err != nil:
		s.rec.note("transport", fmt.Sprintf("%s -> %v", a.req, a.err))
	case a.status >= 500:
		s.rec.note("5xx", fmt.Sprintf("%s -> %d %s", a.req, a.status, clip(a.body)))
	case success && (a.status == http.StatusConflict || a.status == http.StatusTooManyRequests):
		s.rec.note("retryable", fmt.Sprintf("%s -> %d (want %v) %s", a.req, a.status, allowed, clip(a.body)))
	case !slices.Contains(allowed, a.status):
		s.rec.note("unexpected", fmt.Sprintf("%s -> %d (want %v) %s", a.req, a.status, allowed, clip(a.body)))
	default:
		return true
	}
	return false
}

type listBody struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []spaceBody `json:"items"`
}

type spaceBody struct {
	Metadata struct {
		Name              string            `json:"name"`
		ResourceVersion   string            `json:"resourceVersion"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
	} `json:"metadata"`
}

// runNames are the run's names among items, sorted.
func (s *soak) runNames(items []spaceBody) []string {
	var out []string
	for _, item := range items {
		if s.w.isRun(item.Metadata.Name) {
			out = append(out, item.Metadata.Name)
		}
	}
	slices.Sort(out)
	return out
}

// checkNames notes a list that does not show exactly want (the run's names only).
func (s *soak) checkNames(a answer, got, want []string) {
	if slices.Equal(got, want) {
		return
	}
	var missing, extra []string
	for _, n := range want {
		if !slices.Contains(got, n) {
			missing = append(missing, n)
		}
	}
	for _, n := range got {
		if !slices.Contains(want, n) {
			extra = append(extra, n)
		}
	}
	s.rec.note("unexpected", fmt.Sprintf("%s -> %d items of the run, want %d: missing %v extra %v",
		a.req, len(got), len(want), missing, extra))
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

type operation struct {
	name   string
	weight int
	run    func(r *rand.Rand, worker int)
}

func (s *soak) operations() []operation {
	return []operation{
		{"list", 22, s.list},
		{"list-selector", 14, s.listSelector},
		{"list-paged", 8, s.listPaged},
		{"get", 20, s.get},
		{"get-invisible", 10, s.getInvisible},
		{"patch-forbidden", 3, s.patchForbidden},
		{"label", 10, s.label},
		{"create-cycle", 9, s.createCycle},
		{"create-conflict", 2, s.createConflict},
		{"create-invalid", 2, s.createInvalid},
	}
}

// verbOrder is the order of the report's table.
var verbOrder = []string{
	"list", "list-selector", "list-page", "get", "get-invisible", "patch-forbidden", "label",
	"create", "get-own", "label-own", "delete", "create-conflict", "create-invalid", "watch-list", "watch",
}

func (s *soak) load(ctx context.Context, deadline time.Time, seed uint64) {
	ops := s.operations()
	total := 0
	for _, op := range ops {
		total += op.weight
	}
	var wg sync.WaitGroup
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	go s.pollTerminating(pollCtx)
	for worker := range s.workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(worker)))
			for ctx.Err() == nil && time.Now().Before(deadline) {
				n := r.IntN(total)
				for _, op := range ops {
					if n < op.weight {
						op.run(r, worker)
						break
					}
					n -= op.weight
				}
			}
		})
	}
	wg.Wait()
}

// --- viewers ---

func (s *soak) list(r *rand.Rand, _ int) {
	u := pick(r, s.w.viewers)
	a := s.call(u, "list", http.MethodGet, spacesPath, nil, nil, "")
	if !s.expect(a, http.StatusOK) {
		return
	}
	var list listBody
	if err := json.Unmarshal(a.body, &list); err != nil {
		s.rec.note("unexpected", fmt.Sprintf("%s -> 200 that does not decode: %v", a.req, err))
		return
	}
	if list.Metadata.ResourceVersion == "" {
		s.rec.note("unexpected", fmt.Sprintf("%s -> 200 without metadata.resourceVersion", a.req))
	}
	s.checkNames(a, s.runNames(list.Items), u.visible)
}

type selector struct {
	query string
	keep  func(tier int) bool
}

func (s *soak) selectors() []selector {
	run := runLabel + "=" + s.w.run
	return []selector{
		{run + "," + tierLabel + "=t1", func(t int) bool { return t == 1 }},
		{run + "," + tierLabel + "=t3", func(t int) bool { return t == 3 }},
		{tierLabel + " in (t0,t2)", func(t int) bool { return t == 0 || t == 2 }},
		{run + "," + tierLabel + " notin (t1)", func(t int) bool { return t != 1 }},
		{run + ",!" + tierLabel, func(int) bool { return false }},
	}
}

func (s *soak) listSelector(r *rand.Rand, _ int) {
	u := pick(r, s.w.viewers)
	sel := pick(r, s.selectors())
	a := s.call(u, "list-selector", http.MethodGet, spacesPath, url.Values{"labelSelector": {sel.query}}, nil, "")
	if !s.expect(a, http.StatusOK) {
		return
	}
	var list listBody
	if err := json.Unmarshal(a.body, &list); err != nil {
		s.rec.note("unexpected", fmt.Sprintf("%s -> 200 that does not decode: %v", a.req, err))
		return
	}
	var want []string
	for _, name := range u.visible {
		if sel.keep(s.w.tier[name]) {
			want = append(want, name)
		}
	}
	s.checkNames(a, s.runNames(list.Items), want)
}

func (s *soak) listPaged(r *rand.Rand, _ int) {
	u := pick(r, s.w.viewers)
	limit := pick(r, []int{5, 7, 10})
	var (
		all   []spaceBody
		token string
		first answer
	)
	for page := 0; ; page++ {
		if page == maxPages {
			s.rec.note("unexpected", fmt.Sprintf("%s: still a continue token after %d pages", first.req, maxPages))
			return
		}
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if token != "" {
			q.Set("continue", token)
		}
		a := s.call(u, "list-page", http.MethodGet, spacesPath, q, nil, "")
		if page == 0 {
			first = a
		}
		if !s.expect(a, http.StatusOK) {
			return
		}
		var list listBody
		if err := json.Unmarshal(a.body, &list); err != nil {
			s.rec.note("unexpected", fmt.Sprintf("%s -> 200 that does not decode: %v", a.req, err))
			return
		}
		if len(list.Items) > limit || (list.Metadata.Continue != "" && len(list.Items) < limit) {
			s.rec.note("unexpected", fmt.Sprintf("%s -> %d items with continue %q (pages must be full)",
				a.req, len(list.Items), list.Metadata.Continue))
		}
		all = append(all, list.Items...)
		token = list.Metadata.Continue
		if token == "" {
			break
		}
	}
	got := s.runNames(all)
	if len(got) != len(slices.Compact(slices.Clone(got))) {
		s.rec.note("unexpected", fmt.Sprintf("%s: pages repeat names: %v", first.req, got))
		return
	}
	s.checkNames(first, got, u.visible)
}

func (s *soak) get(r *rand.Rand, _ int) {
	u := pick(r, s.w.viewers)
	name := pick(r, u.visible)
	a := s.call(u, "get", http.MethodGet, spacesPath+"/"+name, nil, nil, "")
	if !s.expect(a, http.StatusOK) {
		return
	}
	var got spaceBody
	if err := json.Unmarshal(a.body, &got); err != nil || got.Metadata.Name != name {
		s.rec.note("unexpected", fmt.Sprintf("%s -> 200 with another object (%v): %s", a.req, err, clip(a.body)))
	}
}

// getInvisible asks for a namespace of the run the viewer does not see (or, one time in four, one that does not
// exist): both must be 404 NotFound.
func (s *soak) getInvisible(r *rand.Rand, _ int) {
	u := pick(r, s.w.viewers)
	var name string
	if r.IntN(4) == 0 {
		name = fmt.Sprintf("soak-%s-none-%d", s.w.run, r.IntN(1000))
	} else {
		for name == "" || slices.Contains(u.visible, name) {
			name = pick(r, s.w.namespaces)
		}
	}
	a := s.call(u, "get-invisible", http.MethodGet, spacesPath+"/"+name, nil, nil, "")
	s.expect(a, http.StatusNotFound)
}

func labelPatch(key, value string) []byte {
	return fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, key, value)
}

// patchForbidden: a viewer labels a space it sees but may not change: 403.
func (s *soak) patchForbidden(r *rand.Rand, _ int) {
	u := pick(r, s.w.viewers)
	name := pick(r, u.visible)
	a := s.call(u, "patch-forbidden", http.MethodPatch, spacesPath+"/"+name, nil,
		labelPatch(tickLabel, fmt.Sprint(s.seq.Add(1))), "application/merge-patch+json")
	s.expect(a, http.StatusForbidden)
}

// --- creators ---

// label: a creator merge-patches a label onto one of the shared namespaces it may change (viewers who see it get
// MODIFIED). Each worker labels its own share of them, so two workers never race on one namespace.
func (s *soak) label(r *rand.Rand, worker int) {
	u := pick(r, s.w.creators)
	var mine []string
	for k, name := range s.w.labelable {
		if k%s.workers == worker {
			mine = append(mine, name)
		}
	}
	if len(mine) == 0 {
		mine = s.w.labelable
	}
	name := pick(r, mine)
	a := s.call(u, "label", http.MethodPatch, spacesPath+"/"+name, nil,
		labelPatch(tickLabel, fmt.Sprint(s.seq.Add(1))), "application/merge-patch+json")
	s.expect(a, http.StatusOK)
}

func (s *soak) spaceManifest(name string, labels map[string]string) []byte {
	body, err := json.Marshal(map[string]any{
		"apiVersion": "tenancy.loft.sh/v1",
		"kind":       "Space",
		"metadata":   map[string]any{"name": name, "labels": labels},
	})
	if err != nil {
		panic(err)
	}
	return body
}

// pollTerminating keeps s.terminating current, once a second, from kube-apiserver.
func (s *soak) pollTerminating(ctx context.Context) {
	for ctx.Err() == nil {
		list, err := s.e.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: accountLabel + "=" + s.w.account})
		if err == nil {
			var n int64
			for _, ns := range list.Items {
				if ns.DeletionTimestamp != nil {
					n++
				}
			}
			s.terminating.Store(n)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// waitForRoom holds a creator while maxTerminating of the account's spaces are still being deleted (for at most 10 s):
// on a small machine kube-controller-manager empties namespaces more slowly than the creators delete them, and a
// backlog that grows for the whole run would grow the cluster, and every cache of it, with it.
func (s *soak) waitForRoom() {
	for deadline := time.Now().Add(10 * time.Second); s.maxTerminating > 0 && s.terminating.Load() >= s.maxTerminating &&
		time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
}

// createCycle: a member of the account makes a space, reads it, labels it and deletes it.
func (s *soak) createCycle(r *rand.Rand, _ int) {
	s.waitForRoom()
	u := pick(r, s.w.creators)
	name := fmt.Sprintf("soak-%s-s%d", s.w.run, s.seq.Add(1))
	a := s.call(u, "create", http.MethodPost, spacesPath, nil,
		s.spaceManifest(name, map[string]string{runLabel: s.w.run}), "application/json")
	if !s.expect(a, http.StatusCreated) {
		return
	}
	// The server answers a create once the creator can see the space: a read right after must find it.
	a = s.call(u, "get-own", http.MethodGet, spacesPath+"/"+name, nil, nil, "")
	if s.expect(a, http.StatusOK) {
		var got spaceBody
		if err := json.Unmarshal(a.body, &got); err != nil || got.Metadata.Name != name {
			s.rec.note("unexpected", fmt.Sprintf("%s -> 200 with another object (%v): %s", a.req, err, clip(a.body)))
		} else if _, half := got.Metadata.Annotations[creatingAnnotation]; half {
			// The server's own mark of a space still being made: the read shows a state from before the create
			// finished.
			s.rec.note("stale-read", fmt.Sprintf("%s -> 200 still marked %s: %s", a.req, creatingAnnotation, clip(a.body)))
		}
	}
	a = s.call(u, "label-own", http.MethodPatch, spacesPath+"/"+name, nil,
		labelPatch(tickLabel, fmt.Sprint(s.seq.Add(1))), "application/merge-patch+json")
	s.expect(a, http.StatusOK)
	a = s.call(u, "delete", http.MethodDelete, spacesPath+"/"+name, nil, nil, "")
	s.expect(a, http.StatusOK, http.StatusAccepted)
}

// createConflict: a space named like a namespace that exists (one the creator even sees): 409 AlreadyExists.
func (s *soak) createConflict(r *rand.Rand, _ int) {
	u := pick(r, s.w.creators)
	a := s.call(u, "create-conflict", http.MethodPost, spacesPath, nil,
		s.spaceManifest(pick(r, s.w.labelable), nil), "application/json")
	s.expect(a, http.StatusConflict)
}

// createInvalid: a space that sets one of the server's own label keys: 422 Invalid, nothing made.
func (s *soak) createInvalid(r *rand.Rand, _ int) {
	u := pick(r, s.w.creators)
	name := fmt.Sprintf("soak-%s-x%d", s.w.run, s.seq.Add(1))
	a := s.call(u, "create-invalid", http.MethodPost, spacesPath, nil,
		s.spaceManifest(name, map[string]string{"tenancy.loft.sh/soak": "x"}), "application/json")
	s.expect(a, http.StatusUnprocessableEntity)
}
