// Package procstat reads what Linux reports of a process: a field of /proc/<pid>/status (VmRSS, VmHWM) and the pids a
// test environment wrote to its PID_DIR. Shared by the soak and the memory benchmark's load program.
package procstat

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// StatusKB is the field (VmRSS, VmHWM, ...) of /proc/<pid>/status, in KB.
func StatusKB(pid int, field string) (int64, error) {
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

// Pid is the pid in <pidDir>/<name>.pid, checked to be a running process.
func Pid(pidDir, name string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(pidDir, name+".pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("%s.pid: %w", name, err)
	}
	if _, err := StatusKB(pid, "VmRSS"); err != nil {
		return 0, fmt.Errorf("%s (pid %d): %w", name, pid, err)
	}
	return pid, nil
}
