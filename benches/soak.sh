#!/usr/bin/env bash
# Owns: the full soak — tests/clientgo/cmd/soak for DURATION with WATCHES open watches against a release build of the
# server, through kube-apiserver on loopback, on a throwaway control plane of its own (tests/env/up.sh in a temporary
# directory, stopped on exit). The program sets up its tenants, fills the server's change log (warm-up), keeps the
# watches open while 8 workers list, get, label, create and delete, samples the RSS of the server and of
# kube-apiserver, cleans up, and prints its report ending in `soak: N passed, M failed`; this script exits with its
# status. tests/run.sh runs a short version (40s, 200 watches) against the test run's own environment.
#
# Usage: benches/soak.sh [DURATION] [WATCHES]      (defaults: 15m 1000: long enough that its second half shows the
#                                                  server's steady state, which must grow by under 10 MB)
# Knobs (environment): SOAK_ARGS="-workers 8 -namespaces 300 ..." (more flags for the program; see its -help)
#                      BENCH_KEEP_STATE=1 (keep the temporary state directory, with every log, after the run)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration="${1:-15m}"
watches="${2:-1000}"
if [[ ! "$watches" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [DURATION] [WATCHES]   (e.g. $0 5m 1000)" >&2
  exit 2
fi
log() { echo "soak.sh: $*" >&2; }

state="$(mktemp -d "${TMPDIR:-/tmp}/tenancy-soak.XXXXXX")"
on_exit() {
  local rc=$?
  "$repo/tests/controlplane/down.sh" "$state" >/dev/null 2>&1 || true
  # Logs are what explains a failure, so a failed run keeps them.
  if [[ $rc -ne 0 || "${BENCH_KEEP_STATE:-}" == 1 ]]; then
    log "state and logs kept in $state"
  else
    rm -rf "$state"
  fi
  exit "$rc"
}
trap on_exit EXIT

log "starting a control plane and a release build of the server in $state"
env_file="$(TENANCY_PROFILE=release bash "$repo/tests/env/up.sh" "$state" | tail -n 1)"

log "soak: $duration, $watches watches (machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
# shellcheck disable=SC2086 # SOAK_ARGS is a list of flags
if ! (cd "$repo/tests/clientgo" && TENANCY_E2E_ENV="$env_file" GOTOOLCHAIN=local \
  go run ./cmd/soak -duration "$duration" -watches "$watches" ${SOAK_ARGS:-}); then
  echo "== server log (tail)" >&2
  tail -n 60 "$state/logs/tenancy-apiserver.log" >&2 || true
  exit 1
fi
