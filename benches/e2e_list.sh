#!/usr/bin/env bash
# Owns: the end-to-end list benchmark — `kubectl get spaces` through kube-apiserver's aggregator (filtered per caller
# by the server) against `kubectl get namespaces` served by kube-apiserver itself, on a throwaway local control plane
# with a release build of the server. It starts its own control plane in a temporary directory, grows a world of
# namespaces with RoleBindings, times the lists, prints a table, and stops everything on exit.
# A benchmark, not a test: it fails when the setup is wrong (a count that is off, a deadline passed), never because the
# numbers miss their targets; the targets are printed beside the ratios.
#
# Usage: benches/e2e_list.sh [N...]        (default: 1000 5000; increasing, each N grows the world of the previous one)
# Knobs (environment): BENCH_WARMUP=3 BENCH_RUNS=15 BENCH_CREATE_JOBS=2 BENCH_CATCHUP_TIMEOUT=180 BENCH_SETTLE_TIMEOUT=900
#                      BENCH_NO_HYPERFINE=1 (time with a plain loop even where hyperfine exists)
#                      BENCH_KEEP_STATE=1 (keep the temporary state directory, with every log, after the run)
#                      BENCH_ACCESS_MODE=sar (the server decides visibility by SubjectAccessReview; adds the first
#                      list of an identity the server has not reviewed yet: one review per namespace)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARMUP="${BENCH_WARMUP:-3}"
RUNS="${BENCH_RUNS:-15}"
CREATE_JOBS="${BENCH_CREATE_JOBS:-2}"
CATCHUP_TIMEOUT="${BENCH_CATCHUP_TIMEOUT:-180}"
SETTLE_TIMEOUT="${BENCH_SETTLE_TIMEOUT:-900}"
# ~2,000 objects per `kubectl create`: one namespace and its 3 RoleBindings make 4.
CHUNK_NAMESPACES=500
BINDINGS_PER_NAMESPACE=3
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

# The world. A tenant's view should not grow with the cluster, so teams own blocks of TEAM_SIZE consecutive
# namespaces (group bench-g<i / TEAM_SIZE>) and stay the same size as N grows; owners (user bench-u<i % OWNERS>)
# add one namespace per OWNERS namespaces, so the tenant's view still changes a little with N and a server that
# dropped those grants would be caught. The third binding (a ServiceAccount) matches no tenant: it is there because
# real namespaces carry bindings that match nobody, and the server has to index them all the same.
TEAM_SIZE=40
OWNERS=1000
TENANT_USER=bench-u7
TENANT_GROUP=bench-g7
TENANT_TEAM=7
TENANT_OWNER=7

log() { echo "bench: $*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

sizes=("$@")
((${#sizes[@]})) || sizes=(1000 5000)
prev=0
for n in "${sizes[@]}"; do
  if [[ ! "$n" =~ ^[0-9]+$ ]] || ((n <= prev)); then
    die "sizes must be increasing positive integers, got: ${sizes[*]}"
  fi
  prev=$n
done

run_start=$SECONDS
state="$(mktemp -d "${TMPDIR:-/tmp}/tenancy-bench.XXXXXX")"
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
trap 'die "interrupted"' INT TERM

log "starting the control plane and a release build of the server in $state"
ACCESS_MODE="${BENCH_ACCESS_MODE:-rbac}"
env_file="$(TENANCY_PROFILE=release TENANCY_ACCESS_MODE="$ACCESS_MODE" "$repo/tests/env/up.sh" "$state" | tail -n 1)"
# shellcheck disable=SC1090
source "$env_file"
server_pid="$(cat "$PID_DIR/tenancy-apiserver.pid")"

# A private discovery cache: kubectl's default one is shared with whatever else runs on the machine, and a cold or
# stale cache would be timed as part of `get spaces`.
cache_dir="$state/kubectl-cache"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --cache-dir "$cache_dir" "$@"; }
as_tenant=(--as "$TENANT_USER" --as-group "$TENANT_GROUP")

rss() { awk '$1 == "VmRSS:" { printf "%.1f MiB", $2 / 1024 }' "/proc/$server_pid/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ------------------------------------------------------------------------------------------------------------ world
world_yaml() { # world_yaml FROM TO: namespaces bench-FROM .. bench-(TO-1), each followed by its RoleBindings
  awk -v from="$1" -v to="$2" -v team="$TEAM_SIZE" -v owners="$OWNERS" 'BEGIN {
    rb = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
    ref = "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %s}\n"
    for (i = from; i < to; i++) {
      ns = "bench-" i
      printf "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns
      printf "---\n" rb "metadata: {name: team-view, namespace: %s}\n" ref, ns, "view"
      printf "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: bench-g%d}]\n", int(i / team)
      printf "---\n" rb "metadata: {name: owner-edit, namespace: %s}\n" ref, ns, "edit"
      printf "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bench-u%d}]\n", i % owners
      printf "---\n" rb "metadata: {name: deployer-edit, namespace: %s}\n" ref, ns, "edit"
      printf "subjects: [{kind: ServiceAccount, name: deployer, namespace: %s}]\n", ns
    }
  }'
}

# What RBAC says the tenant may get, computed from the same rules the world was generated with.
expected_tenant_spaces() { # expected_tenant_spaces N
  awk -v n="$1" -v team="$TEAM_SIZE" -v owners="$OWNERS" -v t="$TENANT_TEAM" -v o="$TENANT_OWNER" 'BEGIN {
    for (i = 0; i < n; i++) if (int(i / team) == t || i % owners == o) print "bench-" i
  }' | sort
}

# Timing before the server has seen the new world would time a smaller list, so wait until both views are complete:
# the tenant's (exactly the bench namespaces RBAC grants) and the admin's (every namespace).
# Spaces outside the bench world (a shared space, visible to everyone) are not the bench's RBAC; they are reported.
wait_caught_up() { # wait_caught_up N
  local n="$1" want seen="" seen_bench="" start=$EPOCHREALTIME deadline=$((SECONDS + CATCHUP_TIMEOUT)) all_ns
  local all_spaces="" others
  want="$(expected_tenant_spaces "$n")"
  all_ns="$(k get namespaces -o name | wc -l)"
  while :; do
    seen="$(k get spaces "${as_tenant[@]}" -o name 2>/dev/null | sed 's|^.*/||' | sort || true)"
    seen_bench="$(grep '^bench-' <<<"$seen" || true)"
    if [[ "$seen_bench" == "$want" ]]; then
      all_spaces="$(k get spaces -o name 2>/dev/null | wc -l || true)"
      [[ "$all_spaces" == "$all_ns" ]] && break
    fi
    if ((SECONDS >= deadline)); then
      log "the tenant sees $(grep -c . <<<"$seen_bench") bench spaces, RBAC grants $(grep -c . <<<"$want");" \
        "differences (< granted but not seen, > seen but not granted):"
      diff <(echo "$want") <(echo "$seen_bench") | grep '^[<>]' | head -n 20 >&2 || true
      log "admin sees ${all_spaces:-?} spaces of $all_ns namespaces"
      die "the server's view did not match RBAC within ${CATCHUP_TIMEOUT}s"
    fi
    sleep 0.5
  done
  TENANT_COUNT="$(grep -c . <<<"$seen")"
  ADMIN_COUNT="$all_ns"
  others="$(grep -v '^bench-' <<<"$seen" | paste -sd, || true)"
  awk -v a="$start" -v b="$EPOCHREALTIME" -v t="$TENANT_COUNT" -v w="$(grep -c . <<<"$want")" -v o="${others:-none}" \
    -v u="$TENANT_USER" -v g="$TENANT_GROUP" -v c="$ADMIN_COUNT" 'BEGIN {
      printf "caught up after %.1f s: %s (group %s) sees %d spaces: exactly the %d bench namespaces its RBAC grants,", b - a, u, g, t, w
      printf " plus others: %s; admin sees all %d namespaces\n", o, c
    }'
  if ((TENANT_COUNT < 30 || TENANT_COUNT > 60)); then
    log "note: the tenant sees $TENANT_COUNT spaces, outside the 30-60 this benchmark is meant for (N too small?)"
  fi
}

# The cluster's current revision (a consistent list returns it), to count the writes that happened while timing.
revision() { k get --raw '/api/v1/namespaces?limit=1' | python3 -c 'import json, sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])'; }

# ----------------------------------------------------------------------------------------------------------- timing
# hyperfine is preferred (it measures the process directly); the loop is the fallback wherever it is missing or too
# old for --shell=none. Both record the same per-run wall times, summarized by the same code below.
use_hyperfine=0
if [[ "${BENCH_NO_HYPERFINE:-}" != 1 ]] && command -v hyperfine >/dev/null &&
  hyperfine --shell=none --runs 1 true >/dev/null 2>&1; then
  use_hyperfine=1
fi

time_case() { # time_case OUT_FILE COMMAND: writes one wall time in seconds per measured run to OUT_FILE
  local out="$1" cmd="$2" i t0
  if ((use_hyperfine)); then
    hyperfine --shell=none --warmup "$WARMUP" --runs "$RUNS" --export-json "$out.json" "$cmd" >"$out.log" 2>&1 ||
      die "hyperfine failed on: $cmd (see $out.log)"
    python3 -c 'import json, sys; print("\n".join(str(t) for t in json.load(open(sys.argv[1]))["results"][0]["times"]))' \
      "$out.json" >"$out"
  else
    for ((i = 0; i < WARMUP; i++)); do
      eval "$cmd" >/dev/null || die "failed: $cmd"
    done
    : >"$out"
    for ((i = 0; i < RUNS; i++)); do
      t0=$EPOCHREALTIME
      eval "$cmd" >/dev/null || die "failed: $cmd"
      awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f\n", b - a }' >>"$out"
    done
  fi
}

summary() { # summary TIMES_FILE -> "MEDIAN_MS P90_MS" (p90 by nearest rank: with 15 runs, the 14th fastest)
  sort -g "$1" | awk '{ t[NR] = $1 * 1000 } END {
    m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    r = int(0.9 * NR); if (r < 0.9 * NR) r++
    printf "%.1f %.1f\n", m, t[r]
  }'
}

# Commands are strings so that hyperfine and the loop run exactly the same thing; %q keeps them one word per argument.
q() { printf '%q ' "$@"; }
kc="$(q "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --cache-dir "$cache_dir")"
tenant_flags="$(q "${as_tenant[@]}")"
# curl has no startup cost worth the name, so these rows show what kube-apiserver and the server spend.
cu="$(q curl -sSf -o /dev/null --cacert "$CA_CERT" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key")"
cu_tenant="$(q -H "Impersonate-User: $TENANT_USER" -H "Impersonate-Group: $TENANT_GROUP")"
spaces_path=/apis/tenancy.loft.sh/v1/spaces

# id | label | command | baseline id | target ratio ("" for none)
cases=(
  "a|kubectl get namespaces (admin)|$kc get namespaces|a|"
  "b|kubectl get spaces (tenant)|$kc get spaces $tenant_flags|a|1.3"
  "c|kubectl get spaces (admin)|$kc get spaces|a|2"
  "ra|kubectl get --raw namespaces (admin)|$kc get --raw /api/v1/namespaces|ra|"
  "rb|kubectl get --raw spaces (tenant)|$kc get --raw $spaces_path $tenant_flags|ra|"
  "rc|kubectl get --raw spaces (admin)|$kc get --raw $spaces_path|ra|"
  "ca|curl GET namespaces (admin)|$cu $APISERVER_URL/api/v1/namespaces|ca|"
  "cb|curl GET spaces (tenant)|$cu $cu_tenant $APISERVER_URL$spaces_path|ca|"
  "cc|curl GET spaces (admin)|$cu $APISERVER_URL$spaces_path|ca|"
)

# Under SubjectAccessReview visibility, a caller the server has not seen waits for its first review. Each run is a new
# identity with the tenant's grants (the tenant plus a group of its own), so this one is timed by its own loop.
time_new_identities() { # time_new_identities OUT_FILE N
  local out="$1" n="$2" i t0
  : >"$out"
  for ((i = 0; i < RUNS; i++)); do
    t0=$EPOCHREALTIME
    eval "$cu $(q -H "Impersonate-User: $TENANT_USER" -H "Impersonate-Group: $TENANT_GROUP" \
      -H "Impersonate-Group: bench-new-$n-$i") $APISERVER_URL$spaces_path" >/dev/null || die "first list failed"
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f\n", b - a }' >>"$out"
  done
}

results="$state/results.txt"
: >"$results"

bench_size() { # bench_size N: times every case, appends rows to $results
  local n="$1" row id label cmd base target med p90 base_med ratio verdict
  declare -A medians
  for row in "${cases[@]}"; do
    IFS='|' read -r id label cmd base target <<<"$row"
    time_case "$state/times-$n-$id" "$cmd"
    read -r med p90 < <(summary "$state/times-$n-$id")
    medians[$id]=$med
    base_med="${medians[$base]}"
    ratio="$(awk -v a="$med" -v b="$base_med" 'BEGIN { printf "%.2fx", a / b }')"
    verdict=""
    if [[ -n "$target" ]]; then
      if awk -v a="$med" -v b="$base_med" -v t="$target" 'BEGIN { exit !(a / b <= t) }'; then
        verdict="<= ${target}x ok"
      else
        verdict="<= ${target}x MISSED"
      fi
    fi
    printf '%s|%s|%s|%s|%s|%s|%s\n' "$n" "$id" "$label" "$med" "$p90" "$ratio vs $base" "$verdict" >>"$results"
    log "N=$n $label: median $med ms, p90 $p90 ms"
  done
  if [[ "$ACCESS_MODE" == sar ]]; then
    time_new_identities "$state/times-$n-cd" "$n"
    read -r med p90 < <(summary "$state/times-$n-cd")
    ratio="$(awk -v a="$med" -v b="${medians[ca]}" 'BEGIN { printf "%.2fx", a / b }')"
    printf '%s|cd|%s|%s|%s|%s|\n' "$n" "curl GET spaces (tenant, new identity)" "$med" "$p90" "$ratio vs ca" >>"$results"
    log "N=$n first list of a new identity: median $med ms, p90 $p90 ms"
  fi
}

print_table() {
  printf '\n%-6s %-3s %-38s %10s %10s %12s  %s\n' N id case "median ms" "p90 ms" ratio target
  local n id label med p90 ratio verdict last=""
  while IFS='|' read -r n id label med p90 ratio verdict; do
    [[ -n "$last" && "$n" != "$last" ]] && echo
    last=$n
    printf '%-6s %-3s %-38s %10s %10s %12s  %s\n' "$n" "$id" "$label" "$med" "$p90" "$ratio" "$verdict"
  done <"$results"
}

# -------------------------------------------------------------------------------------------------------------- run
timer="$( ((use_hyperfine)) && echo "hyperfine $(hyperfine --version | cut -d' ' -f2) --shell=none" || echo "a plain loop")"
echo "timing with $timer: $WARMUP warm-up + $RUNS measured runs per case; $(nproc) CPUs, load $(loadavg)"
echo "server: release build, --access-mode=$ACCESS_MODE, pid $server_pid, RSS $(rss) before any bench namespace"
notes=()
prev=0
for n in "${sizes[@]}"; do
  echo
  echo "== N=$n"
  grow_world "$prev" "$n"
  prev=$n
  wait_caught_up "$n"
  wait_settled
  echo "server RSS before timing: $(rss)"
  rev_before="$(revision)"
  bench_size "$n"
  writes=$(($(revision) - rev_before))
  notes+=("N=$n: server RSS $(rss) after timing; load average $(loadavg); $writes cluster writes while timing; tenant sees $TENANT_COUNT spaces, admin $ADMIN_COUNT")
  echo "server RSS after timing: $(rss); load average $(loadavg); $writes cluster writes while timing"
done

print_table
echo
printf '%s\n' "${notes[@]}"
cat <<EOF

Ratios: kubectl rows vs a, --raw rows vs ra, curl rows vs ca. Targets: tenant's spaces list <= 1.3x admin's
namespaces list, admin's spaces list <= 2x. kubectl get pages namespaces by 500 (--chunk-size); the raw and curl rows
are one request each. Whole run: $((SECONDS - run_start)) s.
EOF
