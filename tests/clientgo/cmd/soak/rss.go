package main

// Resident set size of the server and of kube-apiserver, sampled from /proc/<pid>/status (VmRSS) every few seconds,
// with the pids from the env's PID_DIR.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"tenancy-apiserver/tests/clientgo/internal/procstat"
)

type rssSample struct {
	at    time.Time
	bytes int64
}

type rssSeries struct {
	name string
	pid  int
	mu   sync.Mutex
	all  []rssSample
	err  error // the last sampling error (the process gone, most likely)
}

func newSeries(pidDir, name string) (*rssSeries, error) {
	pid, err := procstat.Pid(pidDir, name)
	if err != nil {
		return nil, err
	}
	return &rssSeries{name: name, pid: pid}, nil
}

// vmRSS is the process's resident set size in bytes.
func vmRSS(pid int) (int64, error) {
	kb, err := procstat.StatusKB(pid, "VmRSS")
	return kb * 1024, err
}

func (s *rssSeries) sample() {
	b, err := vmRSS(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = err
		return
	}
	s.all = append(s.all, rssSample{at: time.Now(), bytes: b})
}

// sampleEvery samples until ctx ends.
func (s *rssSeries) sampleEvery(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		s.sample()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// rssWindow summarizes the samples taken in [from, to]: the steady-state window of the run.
type rssWindow struct {
	n                         int
	first, min, max, last     int64
	firstThird, lastThird     int64   // mean of the first and of the last third of the samples
	thirdQuarter, lastQuarter int64   // mean of the third and of the last quarter of the samples
	lastHalfGrowth            int64   // lastQuarter - thirdQuarter: growth over the second half of the load
	before                    int64   // the last sample before the window (after setup), 0 if none
	baseline                  int64   // the very first sample (before setup)
	growth                    int64   // lastThird - firstThird
	trace                     []int64 // up to 12 samples evenly spread over the window, first and last included
}

func (s *rssSeries) window(from, to time.Time) rssWindow {
	s.mu.Lock()
	defer s.mu.Unlock()
	var w rssWindow
	var in []int64
	for _, x := range s.all {
		switch {
		case x.at.Before(from):
			w.before = x.bytes
		case !x.at.After(to):
			in = append(in, x.bytes)
		}
	}
	if len(s.all) > 0 {
		w.baseline = s.all[0].bytes
	}
	w.n = len(in)
	if w.n == 0 {
		return w
	}
	w.first, w.last = in[0], in[len(in)-1]
	w.min, w.max = slices.Min(in), slices.Max(in)
	third := max(1, w.n/3)
	w.firstThird = mean(in[:third])
	w.lastThird = mean(in[w.n-third:])
	w.growth = w.lastThird - w.firstThird
	quarter := max(1, w.n/4)
	w.thirdQuarter = mean(in[w.n/2 : w.n/2+quarter])
	w.lastQuarter = mean(in[w.n-quarter:])
	w.lastHalfGrowth = w.lastQuarter - w.thirdQuarter
	points := min(12, w.n)
	for k := range points {
		idx := 0
		if points > 1 {
			idx = k * (w.n - 1) / (points - 1)
		}
		w.trace = append(w.trace, in[idx])
	}
	return w
}

func mean(xs []int64) int64 {
	var sum int64
	for _, x := range xs {
		sum += x
	}
	return sum / int64(len(xs))
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

func signedMB(b int64) string { return fmt.Sprintf("%+.1f MB", float64(b)/(1<<20)) }

// traceMB renders samples as "23.6 25.0 … MB".
func traceMB(samples []int64) string {
	var parts []string
	for _, b := range samples {
		parts = append(parts, fmt.Sprintf("%.0f", float64(b)/(1<<20)))
	}
	return strings.Join(parts, " ") + " MB"
}
