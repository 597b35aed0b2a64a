#!/usr/bin/env bash
# Owns: taking one component of a running control plane (started by up.sh in STATE_DIR) down and bringing it back,
# for tests of what everything else does meanwhile. The component is started again with exactly the command line up.sh
# recorded for it (STATE_DIR/cmd/NAME.args), its output appended to the same log (LOGS/NAME.log) and its new pid in
# the same pid file, so down.sh stops it as before. Processes are found by pid file only (SIGTERM, then SIGKILL after a
# grace period), never by name, so other control planes on this machine are left alone.
#
# Usage: restart.sh STATE_DIR (kube-apiserver|etcd) [restart|stop|start]
#   restart (the default)  stop it, start it, wait until it is healthy
#   stop                   stop it and leave it down (its pid file is removed)
#   start                  start it unless it is running, then wait until it is healthy
# Healthy: kube-apiserver's /readyz says ok (through kubectl as admin); etcd's /health says true.
set -euo pipefail

usage() {
  echo "usage: $0 STATE_DIR (kube-apiserver|etcd) [restart|stop|start]" >&2
  exit 2
}
[[ $# -ge 2 && $# -le 3 && -n "$1" ]] || usage
name="$2"
action="${3:-restart}"
case "$name" in kube-apiserver | etcd) ;; *) usage ;; esac
case "$action" in restart | stop | start) ;; *) usage ;; esac

STATE_DIR="$(cd "$1" && pwd)"
PIDS="$STATE_DIR/pids"
pid_file="$PIDS/$name.pid"
args_file="$STATE_DIR/cmd/$name.args"
log_file="$STATE_DIR/logs/$name.log"
GRACE_SECONDS="${CONTROLPLANE_STOP_GRACE:-10}"
ETCD_TIMEOUT="${CONTROLPLANE_ETCD_TIMEOUT:-30}"
APISERVER_TIMEOUT="${CONTROLPLANE_APISERVER_TIMEOUT:-60}"

start_time=$EPOCHREALTIME
log() { echo "controlplane: $*" >&2; }
elapsed() { awk -v a="$start_time" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
fail() {
  log "FAILED: $*"
  if [[ -f "$log_file" ]]; then
    echo "----- last 40 lines of $log_file -----" >&2
    tail -n 40 "$log_file" >&2 || true
    echo "-----" >&2
  fi
  exit 1
}

[[ -f "$STATE_DIR/env" ]] || fail "$STATE_DIR/env missing: is a control plane up there?"
[[ -s "$args_file" ]] || fail "$args_file missing: the control plane was started by an up.sh that does not record it"
# The recorded command line, binary first.
mapfile -d '' -t cmd <"$args_file"
# shellcheck disable=SC1091
source "$STATE_DIR/env"

alive() { # alive PID: running and not a zombie
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z* ]]
}

# The pid in the pid file, if that process is alive and still runs the recorded binary (a pid may have been reused).
running_pid() {
  local pid argv0
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n 1)"
    [[ "$argv0" == "${cmd[0]}" ]] || return 1
  fi
  echo "$pid"
}

stop() {
  local pid deadline
  if ! pid="$(running_pid)"; then
    log "$name is not running"
    rm -f "$pid_file"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + GRACE_SECONDS))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if alive "$pid"; then
    log "$name: pid $pid ignored SIGTERM for ${GRACE_SECONDS}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    alive "$pid" && fail "$name: pid $pid survived SIGKILL"
  fi
  rm -f "$pid_file"
  log "stopped $name (pid $pid) after $(elapsed)"
}

healthy() {
  case "$name" in
    kube-apiserver)
      [[ "$("$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout 5s get --raw /readyz 2>/dev/null)" == ok ]]
      ;;
    etcd) curl -sf --max-time 2 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"' ;;
  esac
}

start() {
  local pid timeout deadline
  if pid="$(running_pid)"; then
    log "$name is already running (pid $pid)"
  else
    echo "----- $(date -u +%FT%TZ) restarted by $0 -----" >>"$log_file"
    # As up.sh starts it: detached from our stdin/stdout, so callers capturing our output are not held open by it.
    "${cmd[@]}" </dev/null >>"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"
    log "started $name (pid $pid, log $log_file)"
  fi
  timeout="$APISERVER_TIMEOUT"
  [[ "$name" == etcd ]] && timeout="$ETCD_TIMEOUT"
  deadline=$((SECONDS + timeout))
  until healthy; do
    alive "$pid" || fail "$name (pid $pid) exited while waiting for it to be healthy"
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $name to be healthy"
    sleep 0.2
  done
  log "$name healthy after $(elapsed)"
}

case "$action" in
  restart)
    stop
    start
    ;;
  stop) stop ;;
  start) start ;;
esac
