package main

// Memory of the server and of kube-apiserver (VmRSS, and the server's VmHWM) from /proc/<pid>/status, with the pids
// from the env's PID_DIR, and this program's own.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type procs struct {
	server, apiserver int
}

func newProcs(pidDir string) (*procs, error) {
	read := func(name string) (int, error) {
		raw, err := os.ReadFile(filepath.Join(pidDir, name+".pid"))
		if err != nil {
			return 0, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			return 0, fmt.Errorf("%s.pid: %w", name, err)
		}
		if _, err := statusKB(pid, "VmRSS"); err != nil {
			return 0, fmt.Errorf("%s (pid %d): %w", name, pid, err)
		}
		return pid, nil
	}
	server, err := read("tenancy-apiserver")
	if err != nil {
		return nil, err
	}
	apiserver, err := read("kube-apiserver")
	if err != nil {
		return nil, err
	}
	return &procs{server: server, apiserver: apiserver}, nil
}

// statusKB is the field (VmRSS, VmHWM, ...) of /proc/<pid>/status, in KB.
func statusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if rest, ok := strings.CutPrefix(scanner.Text(), field+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) != 2 || fields[1] != "kB" {
				return 0, fmt.Errorf("unexpected line %q", scanner.Text())
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s (a zombie?)", pid, field)
}

type rssSample struct {
	server, serverHWM, apiserver, self int64 // KB; -1 when unreadable
}

func (p *procs) sample() rssSample {
	get := func(pid int, field string) int64 {
		kb, err := statusKB(pid, field)
		if err != nil {
			return -1
		}
		return kb
	}
	return rssSample{
		server:    get(p.server, "VmRSS"),
		serverHWM: get(p.server, "VmHWM"),
		apiserver: get(p.apiserver, "VmRSS"),
		self:      get(os.Getpid(), "VmRSS"),
	}
}

// print samples and prints `RSS <label> server=... server_hwm=... kube-apiserver=... self=...` (KB).
func (p *procs) print(label string) rssSample {
	s := p.sample()
	out("RSS %s server=%d server_hwm=%d kube-apiserver=%d self=%d", label, s.server, s.serverHWM, s.apiserver, s.self)
	if s.server < 0 {
		logf("the server (pid %d) is gone", p.server)
	}
	return s
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
