package main

// The watches: each user's list (its resourceVersion), the watches opened a few at a time, and their streams read
// (or, the abuse case, left unread), every ADDED of a grant namespace stamped with its arrival time.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"tenancy-apiserver/tests/clientgo/internal/e2eenv"
)

const (
	spacesPath     = "/apis/tenancy.loft.sh/v1/spaces"
	namespacesPath = "/api/v1/namespaces"
	openAttempts   = 3
)

type tenant struct {
	name, group string
	client      *http.Client
	rv          string
	spaces      int
}

type watch struct {
	id     int
	who    string
	client *http.Client
	url    string
	body   io.ReadCloser // set once open

	bytes, events, bookmarks atomic.Int64
	done                     chan struct{} // closed when the reader returns
	mu                       sync.Mutex
	ended                    string // why the stream ended before the run closed it ("" while open)
}

func (w *watch) end(reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended == "" {
		w.ended = reason
	}
}

func (w *watch) endedReason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ended
}

type load struct {
	o         options
	env       *e2eenv.Env
	base      string
	admin     *http.Client
	tenants   []*tenant
	watches   []*watch
	grantBase string // grant namespaces are grantBase + k
	arrivals  arrivals
	closing   atomic.Bool
}

// arrivals is, per grant namespace, when each watch received its ADDED.
type arrivals struct {
	mu  sync.Mutex
	got map[string]map[int]time.Time
}

func (a *arrivals) add(name string, watch int, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.got == nil {
		a.got = map[string]map[int]time.Time{}
	}
	if a.got[name] == nil {
		a.got[name] = map[int]time.Time{}
	}
	if _, dup := a.got[name][watch]; !dup {
		a.got[name][watch] = at
	}
}

func (a *arrivals) count(name string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got[name])
}

// latencies are the arrivals of name after start, within limit.
func (a *arrivals) latencies(name string, start time.Time, limit time.Duration) []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var all []time.Duration
	for _, at := range a.got[name] {
		if d := at.Sub(start); d <= limit {
			all = append(all, d)
		}
	}
	return all
}

func newLoad(e *e2eenv.Env, o options) (*load, error) {
	l := &load{o: o, env: e, base: e.Vars["APISERVER_URL"], grantBase: fmt.Sprintf("%s-%s-", o.grantPrefix, o.run)}
	var err error
	if l.admin, err = rest.HTTPClientFor(e.Admin); err != nil {
		return nil, err
	}
	if o.resource == "spaces" {
		for j := range o.users {
			t := &tenant{name: fmt.Sprintf("%s%d", o.userPrefix, j), group: fmt.Sprintf("%s%d", o.groupPrefix, j%o.groups)}
			cfg := rest.CopyConfig(e.Admin)
			cfg.Impersonate = rest.ImpersonationConfig{UserName: t.name, Groups: []string{t.group}}
			// All share client-go's cached TLS transport: HTTP/2 connections to kube-apiserver, as one client's.
			if t.client, err = rest.HTTPClientFor(cfg); err != nil {
				return nil, err
			}
			l.tenants = append(l.tenants, t)
		}
	}
	return l, nil
}

type listBody struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	} `json:"items"`
}

func (l *load) list(ctx context.Context, client *http.Client, path string) (*listBody, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, clip(body))
	}
	var list listBody
	if err := json.Unmarshal(body, &list); err != nil || list.Metadata.ResourceVersion == "" {
		return nil, fmt.Errorf("GET %s: no usable list (%v): %s", path, err, clip(body))
	}
	return &list, nil
}

// prepare lists (each user's spaces, or the namespaces' resourceVersion) and lays out the watches.
func (l *load) prepare(ctx context.Context) error {
	q := url.Values{"watch": {"1"}, "allowWatchBookmarks": {"true"}, "timeoutSeconds": {"3600"}}
	if l.o.resource == "namespaces" {
		list, err := l.list(ctx, l.admin, namespacesPath+"?limit=1")
		if err != nil {
			return err
		}
		q.Set("resourceVersion", list.Metadata.ResourceVersion)
		for i := range l.o.watches {
			l.watches = append(l.watches, &watch{id: i, who: "admin", client: l.admin,
				url: l.base + namespacesPath + "?" + q.Encode(), done: make(chan struct{})})
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(l.tenants))
	sem := make(chan struct{}, 10)
	for i, t := range l.tenants {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			list, err := l.list(ctx, t.client, spacesPath)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", t.name, err)
				return
			}
			t.rv, t.spaces = list.Metadata.ResourceVersion, len(list.Items)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	counts := make([]int, len(l.tenants))
	for i, t := range l.tenants {
		counts[i] = t.spaces
	}
	slices.Sort(counts)
	out("USERS %d spaces_min=%d spaces_median=%d spaces_max=%d", len(counts), counts[0], counts[len(counts)/2], counts[len(counts)-1])
	for i := range l.o.watches {
		t := l.tenants[i%len(l.tenants)]
		wq := maps1(q)
		wq.Set("resourceVersion", t.rv)
		l.watches = append(l.watches, &watch{id: i, who: t.name, client: t.client,
			url: l.base + spacesPath + "?" + wq.Encode(), done: make(chan struct{})})
	}
	return nil
}

func maps1(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = slices.Clone(v)
	}
	return c
}

// open opens w (its 200 arrived), retrying a failed attempt twice.
func (l *load) open(ctx context.Context, w *watch) error {
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := w.client.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			w.body = resp.Body
			return nil
		}
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			err = fmt.Errorf("%d %s", resp.StatusCode, clip(body))
		}
		if attempt == openAttempts || ctx.Err() != nil {
			return fmt.Errorf("watch %d as %s: %w", w.id, w.who, err)
		}
		if !sleepCtx(ctx, time.Duration(attempt)*500*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// openAll opens every watch, o.concurrency at a time; with o.read each starts being read as soon as it is open.
func (l *load) openAll(ctx context.Context) (opened int, failures []error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, l.o.concurrency)
	for _, w := range l.watches {
		sem <- struct{}{}
		wg.Go(func() {
			err := l.open(ctx, w)
			<-sem
			mu.Lock()
			if err != nil {
				failures = append(failures, err)
			} else {
				opened++
			}
			mu.Unlock()
			if err != nil {
				w.end("did not open")
				close(w.done)
				return
			}
			if l.o.read {
				go l.read(w)
			}
		})
	}
	wg.Wait()
	return opened, failures
}

type event struct {
	Type   string `json:"type"`
	Object struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		// Set when the object is a Status (ERROR events).
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"object"`
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// read decodes w's events until its stream ends; an end before the run closes the watches is recorded.
func (l *load) read(w *watch) {
	defer close(w.done)
	dec := json.NewDecoder(countingReader{r: w.body, n: &w.bytes})
	for {
		var ev event
		if err := dec.Decode(&ev); err != nil {
			if !l.closing.Load() {
				w.end(fmt.Sprintf("stream ended: %v", err))
			}
			return
		}
		at := time.Now()
		switch ev.Type {
		case "ADDED":
			w.events.Add(1)
			if strings.HasPrefix(ev.Object.Metadata.Name, l.grantBase) {
				l.arrivals.add(ev.Object.Metadata.Name, w.id, at)
			}
		case "MODIFIED", "DELETED":
			w.events.Add(1)
		case "BOOKMARK":
			w.bookmarks.Add(1)
		case "ERROR":
			w.end(fmt.Sprintf("ERROR event %d %s: %s", ev.Object.Code, ev.Object.Reason, ev.Object.Message))
		default:
			w.end(fmt.Sprintf("event of type %q", ev.Type))
		}
	}
}

// ended counts the watches whose stream ended on its own, with a few of the reasons.
func (l *load) ended() (int, []string) {
	n := 0
	var reasons []string
	for _, w := range l.watches {
		if r := w.endedReason(); r != "" {
			n++
			if len(reasons) < 5 {
				reasons = append(reasons, fmt.Sprintf("watch %d (%s): %s", w.id, w.who, r))
			}
		}
	}
	return n, reasons
}

// closeAll ends every watch and waits for their readers.
func (l *load) closeAll(cancel context.CancelFunc) {
	l.closing.Store(true)
	cancel()
	for _, w := range l.watches {
		if w.body != nil {
			w.body.Close()
		}
		if l.o.read {
			<-w.done
		}
	}
}

// drainUnread reads every unread stream for o.drain: a stream the server (or kube-apiserver) ended comes to its end
// within it (after what was buffered on the way); one still open does not.
func (l *load) drainUnread(cancel context.CancelFunc) (open, ended, errorEvents int, buffered int64) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, w := range l.watches {
		if w.body == nil {
			continue
		}
		wg.Go(func() {
			dec := json.NewDecoder(countingReader{r: w.body, n: &w.bytes})
			sawError := false
			for {
				var ev event
				if err := dec.Decode(&ev); err != nil {
					mu.Lock()
					if l.closing.Load() {
						open++
					} else {
						ended++
						w.end(fmt.Sprintf("stream ended: %v", err))
					}
					if sawError {
						errorEvents++
					}
					mu.Unlock()
					return
				}
				if ev.Type == "ERROR" {
					sawError = true
				}
			}
		})
	}
	sleepCtx(context.Background(), l.o.drain)
	l.closing.Store(true)
	cancel()
	wg.Wait()
	for _, w := range l.watches {
		buffered += w.bytes.Load()
	}
	return open, ended, errorEvents, buffered
}

func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
