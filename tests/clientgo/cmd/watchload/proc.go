package main

// Memory of the server and of kube-apiserver (VmRSS, and the server's VmHWM) from /proc/<pid>/status, with the pids
// from the env's PID_DIR, and this program's own.

import (
	"fmt"
	"os"

	"tenancy-apiserver/tests/clientgo/internal/procstat"
)

type procs struct {
	server, apiserver int
}

func newProcs(pidDir string) (*procs, error) {
	server, err := procstat.Pid(pidDir, "tenancy-apiserver")
	if err != nil {
		return nil, err
	}
	apiserver, err := procstat.Pid(pidDir, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	return &procs{server: server, apiserver: apiserver}, nil
}

type rssSample struct {
	server, serverHWM, apiserver, self int64 // KB; -1 when unreadable
}

func (p *procs) sample() rssSample {
	get := func(pid int, field string) int64 {
		kb, err := procstat.StatusKB(pid, field)
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
