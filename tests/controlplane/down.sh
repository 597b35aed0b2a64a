#!/usr/bin/env bash
# Owns: stopping everything whose pid file is in STATE_DIR/pids: the control plane started by up.sh (etcd,
# kube-apiserver, kube-controller-manager, authz-webhook) and whatever other scripts registered there. Processes are
# stopped by pid only (SIGTERM, then SIGKILL after a grace period), never by name, so other control planes on this
# machine are left alone. Idempotent: stopping an already stopped STATE_DIR succeeds.
#
# Usage: down.sh STATE_DIR
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi

PIDS="$1/pids"
GRACE_SECONDS="${CONTROLPLANE_STOP_GRACE:-10}"
log() { echo "controlplane: $*" >&2; }

[[ -d "$PIDS" ]] || exit 0

alive() { # alive PID: running and not a zombie (a zombie has exited; only its parent has not reaped it yet)
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z* ]]
}

# A pid file outlives its process across reboots and crashes, and the pid may since have been given to an unrelated
# process. A process that started after its pid file was written cannot be the one the file names, so it is spared.
# Only checkable where /proc exists; elsewhere the pid is trusted.
started_after_pidfile() { # started_after_pidfile PID PIDFILE
  local pid="$1" file="$2" stat rest btime ticks start mtime
  [[ -r "/proc/$pid/stat" && -r /proc/stat ]] || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  rest="${stat##*) }" # the command name may contain spaces and parentheses; fields after it are fixed
  start="$(awk '{ print $20 }' <<<"$rest")"
  btime="$(awk '$1 == "btime" { print $2 }' /proc/stat)"
  ticks="$(getconf CLK_TCK)"
  mtime="$(stat -c %Y "$file" 2>/dev/null)" || return 1
  # One second of slack: both clocks are truncated to whole seconds.
  ((btime + start / ticks > mtime + 1))
}

stop() { # stop PIDFILE
  local file="$1" name pid
  name="$(basename "$file" .pid)"
  pid="$(cat "$file" 2>/dev/null || true)"
  if [[ ! "$pid" =~ ^[0-9]+$ ]]; then
    log "$name: ignoring malformed pid file $file"
  elif ! alive "$pid"; then
    : # already gone
  elif started_after_pidfile "$pid" "$file"; then
    log "$name: pid $pid now belongs to a newer process; not touching it"
  else
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + GRACE_SECONDS))
    while alive "$pid" && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name: pid $pid ignored SIGTERM for ${GRACE_SECONDS}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
      while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
      alive "$pid" && log "$name: pid $pid survived SIGKILL (stuck in the kernel?)"
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

# Clients of the control plane (anything other scripts registered) go first, so they do not spend their last seconds
# logging connection errors; then the control plane from the top down: the authorization webhook after kube-apiserver,
# its only client, and etcd last because everything else writes to it.
core=(kube-controller-manager kube-apiserver authz-webhook etcd)
for file in "$PIDS"/*.pid; do
  [[ -e "$file" ]] || continue
  name="$(basename "$file" .pid)"
  [[ " ${core[*]} " == *" $name "* ]] || stop "$file"
done
for name in "${core[@]}"; do
  [[ -e "$PIDS/$name.pid" ]] && stop "$PIDS/$name.pid"
done
exit 0
