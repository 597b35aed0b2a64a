package main

// What the soak records: latencies and statuses per verb, every HTTP status the transport saw (retries included),
// transport errors, and examples of anything unexpected with the exact request and answer.

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// statusCounter counts every HTTP response any client received, as the transport saw it: client-go-level retries
// (429 with Retry-After) included, and the first response of every watch.
type statusCounter struct {
	mu     sync.Mutex
	counts map[int]int
}

func (c *statusCounter) add(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[int]int{}
	}
	c.counts[code]++
}

func (c *statusCounter) snapshot() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

type verbStats struct {
	durations []time.Duration
	statuses  map[int]int
	errors    int // transport errors: no HTTP answer at all
}

// recorder keeps per-verb numbers and the examples shown in the report.
type recorder struct {
	mu       sync.Mutex
	verbs    map[string]*verbStats
	examples map[string][]string // kind -> up to maxExamples descriptions
	counts   map[string]int      // kind -> how many, examples or not
}

const maxExamples = 5

func newRecorder() *recorder {
	return &recorder{verbs: map[string]*verbStats{}, examples: map[string][]string{}, counts: map[string]int{}}
}

func (r *recorder) verb(name string) *verbStats {
	v := r.verbs[name]
	if v == nil {
		v = &verbStats{statuses: map[int]int{}}
		r.verbs[name] = v
	}
	return v
}

// request records one request's outcome: status 0 with err for a transport error.
func (r *recorder) request(verb string, took time.Duration, status int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.verb(verb)
	if err != nil {
		v.errors++
		return
	}
	v.durations = append(v.durations, took)
	v.statuses[status]++
}

// note counts one occurrence of kind (e.g. "unexpected", "transport", "5xx") and keeps its description as an
// example while there are fewer than maxExamples.
func (r *recorder) note(kind, description string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[kind]++
	if len(r.examples[kind]) < maxExamples {
		r.examples[kind] = append(r.examples[kind], description)
	}
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[kind]
}

func (r *recorder) examplesOf(kind string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.examples[kind])
}

// percentile is the nearest-rank percentile of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return float64(sorted[rank].Microseconds()) / 1000
}

// table renders the per-verb lines of the report, verbs in the given order first, then any others.
func (r *recorder) table(order []string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := slices.Clone(order)
	var rest []string
	for name := range r.verbs {
		if !slices.Contains(order, name) {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	names = append(names, rest...)
	var b strings.Builder
	fmt.Fprintf(&b, "  %-16s %7s %8s %8s %8s  %s\n", "verb", "count", "p50 ms", "p99 ms", "max ms", "statuses")
	for _, name := range names {
		v := r.verbs[name]
		if v == nil {
			continue
		}
		sorted := slices.Clone(v.durations)
		slices.Sort(sorted)
		var codes []string
		for _, code := range slices.Sorted(maps.Keys(v.statuses)) {
			codes = append(codes, fmt.Sprintf("%d:%d", code, v.statuses[code]))
		}
		if v.errors > 0 {
			codes = append(codes, fmt.Sprintf("transport-error:%d", v.errors))
		}
		fmt.Fprintf(&b, "  %-16s %7d %8.1f %8.1f %8.1f  %s\n", name, len(v.durations)+v.errors,
			percentile(sorted, 50), percentile(sorted, 99), percentile(sorted, 100), strings.Join(codes, " "))
	}
	return b.String()
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.verbs {
		n += len(v.durations) + v.errors
	}
	return n
}

// clip shortens a response body for an example line.
func clip(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}
