#!/usr/bin/env bash
# Owns: the end-to-end memory benchmark — the server's resident memory (VmRSS, VmHWM) beside kube-apiserver's as the
# cluster grows, what each open watch costs it, how fast a grant reaches thousands of watches through the server
# compared with kube-apiserver's own namespace watches, and what unread watches and idle connections do to it. On a
# throwaway local control plane with a release build of the server (as e2e_list.sh): it starts its own control plane
# in a temporary directory, grows a world of namespaces with RoleBindings, runs tests/clientgo/cmd/watchload for the
# watches, prints tables, and stops everything on exit.
# A benchmark, not a test: it fails when the setup is wrong (a count that is off, a deadline passed, a watch that did
# not open or missed a grant), never because the numbers miss their targets; the targets are printed beside them.
#
# The world: namespaces mem-<i>, i in [0, N), each with a RoleBinding team-view (ClusterRole view) to group
# mem-g<i % 10> and owner-edit (ClusterRole edit) to user mem-u<i % 100>: 10 groups' grants over N namespaces and
# 100 users, user mem-u<j> (in group mem-g<j % 10>) sees N/10 spaces.
#
# Usage: benches/memory.sh [N...]        (default: 1000 5000 10000; increasing, each N grows the world of the previous)
# Phases: for each N, grow the world, wait until the server caught up and kube-controller-manager settled, list
# (5x `kubectl get spaces` for 10 tenants, 5x the admin's spaces and namespaces), sample memory. Right after the
# first N's lists: the watch phase (for each W: W tenant space watches, then W admin namespace watches, each run
# making timed grants). After the last N: the abuse phase (unread watches, idle TLS connections to the server's port).
# Knobs (environment): BENCH_WATCHES="1000 3000" BENCH_GRANTS=20 BENCH_WATCH_HOLD=10s
#                      BENCH_ABUSE=1 (0: skip the abuse phase) BENCH_ABUSE_WATCHES=1000 BENCH_ABUSE_HOLD=45s
#                      BENCH_ABUSE_CHURN=500ms (a change every watch receives, while the unread watches are held)
#                      BENCH_IDLE_CONNS=2000 BENCH_IDLE_HOLD=30s BENCH_SETTLE_SECONDS=5 (after closing watches)
#                      BENCH_RESTART=1 (0: keep the server running after the watch phase instead of starting it
#                      again, so the later sizes include what its allocator kept of the watches)
#                      BENCH_CREATE_JOBS=2 BENCH_CATCHUP_TIMEOUT=180 BENCH_SETTLE_TIMEOUT=900
#                      BENCH_KEEP_STATE=1 (keep the temporary state directory, with every log, after the run)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
read -r -a watch_counts <<<"${BENCH_WATCHES:-1000 3000}"
GRANTS="${BENCH_GRANTS:-20}"
WATCH_HOLD="${BENCH_WATCH_HOLD:-10s}"
ABUSE="${BENCH_ABUSE:-1}"
ABUSE_WATCHES="${BENCH_ABUSE_WATCHES:-1000}"
ABUSE_HOLD="${BENCH_ABUSE_HOLD:-45s}"
ABUSE_CHURN="${BENCH_ABUSE_CHURN:-500ms}"
IDLE_CONNS="${BENCH_IDLE_CONNS:-2000}"
IDLE_HOLD="${BENCH_IDLE_HOLD:-30s}"
SETTLE_SECONDS="${BENCH_SETTLE_SECONDS:-5}"
RESTART="${BENCH_RESTART:-1}"
CREATE_JOBS="${BENCH_CREATE_JOBS:-2}"
CATCHUP_TIMEOUT="${BENCH_CATCHUP_TIMEOUT:-180}"
SETTLE_TIMEOUT="${BENCH_SETTLE_TIMEOUT:-900}"
# ~1,500 objects per `kubectl create`: one namespace and its 2 RoleBindings make 3.
CHUNK_NAMESPACES=500
BINDINGS_PER_NAMESPACE=2
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"
GROUPS_N=10
USERS_N=100
LIST_RUNS=5
# The tenant whose view is checked while waiting for the server to catch up.
TENANT_USER=mem-u7
TENANT_GROUP=mem-g7

log() { echo "bench: $*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

sizes=("$@")
((${#sizes[@]})) || sizes=(1000 5000 10000)
prev=0
for n in "${sizes[@]}"; do
  if [[ ! "$n" =~ ^[0-9]+$ ]] || ((n <= prev)); then
    die "sizes must be increasing positive integers, got: ${sizes[*]}"
  fi
  prev=$n
done
for w in "${watch_counts[@]}" "$ABUSE_WATCHES" "$IDLE_CONNS" "$GRANTS"; do
  [[ "$w" =~ ^[0-9]+$ ]] || die "BENCH_WATCHES, BENCH_ABUSE_WATCHES, BENCH_IDLE_CONNS and BENCH_GRANTS take integers"
done

# Thousands of watches and connections need file descriptors in this script's children: the control plane (started
# below, it inherits the limit), the server and the load program.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

run_start=$SECONDS
state="$(mktemp -d "${TMPDIR:-/tmp}/tenancy-bench-memory.XXXXXX")"
on_exit() {
  local rc=$?
  if [[ -n "${load_pid:-}" ]]; then kill "$load_pid" 2>/dev/null || true; fi
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

log "building tests/clientgo/cmd/watchload"
(cd "$repo/tests/clientgo" && GOTOOLCHAIN=local go build -o "$state/watchload" ./cmd/watchload) ||
  die "building watchload failed"

log "starting the control plane and a release build of the server in $state"
env_file="$(TENANCY_PROFILE=release "$repo/tests/env/up.sh" "$state" | tail -n 1)"
# shellcheck disable=SC1090
source "$env_file"
server_pid="$(cat "$PID_DIR/tenancy-apiserver.pid")"
apiserver_pid="$(cat "$PID_DIR/kube-apiserver.pid")"

cache_dir="$state/kubectl-cache"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --cache-dir "$cache_dir" "$@"; }

status_kb() { # status_kb PID FIELD: VmRSS, VmHWM, ... of /proc/PID/status in KB
  awk -v f="$2:" '$1 == f { print $2; found = 1 } END { exit !found }' "/proc/$1/status" 2>/dev/null ||
    die "process $1 is gone (reading its $2)"
}
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f MiB", kb / 1024 }'; }
fd_limit() { awk '$1 == "Max" && $2 == "open" { print $4 }' "/proc/$1/limits"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
alive_or_die() { kill -0 "$server_pid" 2>/dev/null || die "the server (pid $server_pid) exited"; }

# ------------------------------------------------------------------------------------------------------------ world
world_yaml() { # world_yaml FROM TO: namespaces mem-FROM .. mem-(TO-1), each followed by its RoleBindings
  awk -v from="$1" -v to="$2" -v groups="$GROUPS_N" -v users="$USERS_N" 'BEGIN {
    rb = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
    ref = "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %s}\n"
    for (i = from; i < to; i++) {
      ns = "mem-" i
      printf "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns
      printf "---\n" rb "metadata: {name: team-view, namespace: %s}\n" ref, ns, "view"
      printf "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: mem-g%d}]\n", i % groups
      printf "---\n" rb "metadata: {name: owner-edit, namespace: %s}\n" ref, ns, "edit"
      printf "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mem-u%d}]\n", i % users
    }
  }'
}

# What RBAC lets user mem-u<j> in group mem-g<j % 10> get: the team's namespaces (its own are among them).
expected_spaces() { # expected_spaces N GROUP_INDEX
  awk -v n="$1" -v g="$2" -v groups="$GROUPS_N" 'BEGIN { for (i = 0; i < n; i++) if (i % groups == g) print "mem-" i }' | sort
}

# The tenant sees exactly the mem- namespaces RBAC grants it (other spaces, from the env or the watch phase's
# grants, are reported), and the admin sees every namespace.
wait_caught_up() { # wait_caught_up N
  local n="$1" want seen="" seen_mem="" start=$EPOCHREALTIME deadline=$((SECONDS + CATCHUP_TIMEOUT)) all_ns
  local all_spaces="" others
  want="$(expected_spaces "$n" "${TENANT_GROUP#mem-g}")"
  all_ns="$(k get namespaces -o name | wc -l)"
  while :; do
    seen="$(k get spaces --as "$TENANT_USER" --as-group "$TENANT_GROUP" -o name 2>/dev/null | sed 's|^.*/||' | sort || true)"
    seen_mem="$(grep -E '^mem-[0-9]+$' <<<"$seen" || true)"
    if [[ "$seen_mem" == "$want" ]]; then
      all_spaces="$(k get spaces -o name 2>/dev/null | wc -l || true)"
      [[ "$all_spaces" == "$all_ns" ]] && break
    fi
    if ((SECONDS >= deadline)); then
      log "the tenant sees $(grep -c . <<<"$seen_mem") mem- spaces, RBAC grants $(grep -c . <<<"$want"); differences:"
      diff <(echo "$want") <(echo "$seen_mem") | grep '^[<>]' | head -n 20 >&2 || true
      log "admin sees ${all_spaces:-?} spaces of $all_ns namespaces"
      die "the server's view did not match RBAC within ${CATCHUP_TIMEOUT}s"
    fi
    sleep 0.5
  done
  others="$(grep -vE '^mem-[0-9]+$' <<<"$seen" || true)"
  awk -v a="$start" -v b="$EPOCHREALTIME" -v t="$(grep -c . <<<"$seen")" -v w="$(grep -c . <<<"$want")" \
    -v o="$(grep -c . <<<"$others")" -v names="$(head -n 4 <<<"$others" | paste -sd, -)" \
    -v u="$TENANT_USER" -v g="$TENANT_GROUP" -v c="$all_ns" 'BEGIN {
      printf "caught up after %.1f s: %s (group %s) sees %d spaces: exactly the %d mem- namespaces RBAC grants", b - a, u, g, t, w
      printf " plus %d others%s; admin sees all %d namespaces\n", o, (o ? " (" names (o > 4 ? ", ..." : "") ")" : ""), c
    }'
}

# ------------------------------------------------------------------------------------------------------------ lists
timed() { # timed LABEL RUNS COMMAND...: runs COMMAND RUNS times, prints the mean wall time
  local label="$1" runs="$2" i start
  shift 2
  start=$EPOCHREALTIME
  for ((i = 0; i < runs; i++)); do
    "$@" >/dev/null || die "failed: $*"
  done
  awk -v a="$start" -v b="$EPOCHREALTIME" -v r="$runs" -v l="$label" 'BEGIN { printf "  %-44s %4d runs, mean %6.1f ms\n", l, r, (b - a) * 1000 / r }'
}

run_lists() { # run_lists N: the lists, and each of 10 tenants' count checked
  local n="$1" j count want
  want=$((n / GROUPS_N))
  for ((j = 0; j < 10; j++)); do
    count="$(k get spaces --as "mem-u$j" --as-group "mem-g$((j % GROUPS_N))" -o name | grep -cE '/mem-[0-9]+$' || true)"
    want="$(expected_spaces "$n" $((j % GROUPS_N)) | wc -l)"
    ((count == want)) || die "mem-u$j sees $count mem- spaces, RBAC grants $want"
    timed "kubectl get spaces (tenant mem-u$j)" "$LIST_RUNS" \
      k get spaces --as "mem-u$j" --as-group "mem-g$((j % GROUPS_N))" >>"$state/lists-$n.txt"
  done
  timed "kubectl get spaces (admin)" "$LIST_RUNS" k get spaces >>"$state/lists-$n.txt"
  timed "kubectl get namespaces (admin)" "$LIST_RUNS" k get namespaces >>"$state/lists-$n.txt"
  echo "lists (each of the 10 tenants sees its $want mem- spaces, as RBAC grants):"
  # The tenants' ten rows in one: min..max of their means.
  awk -v runs="$LIST_RUNS" '/tenant/ { m = $(NF - 1); if (min == "" || m < min) min = m; if (m > max) max = m; next } { print }
       END { printf "  %-44s %4d runs, mean %s..%s ms\n", "kubectl get spaces (10 tenants, each)", runs, min, max }' "$state/lists-$n.txt"
}

# ---------------------------------------------------------------------------------------------------------- watches
load_pid=""
watchload() { # watchload OUT_FILE ARGS...: runs the load program (progress on stderr), then shows its report, OUT_FILE
  local out="$1" rc=0
  shift
  # In the background so that an interrupt stops it (on_exit) instead of waiting for it.
  TENANCY_E2E_ENV="$env_file" "$state/watchload" "$@" >"$out" 2>"$out.log" &
  load_pid=$!
  wait "$load_pid" || rc=$?
  load_pid=""
  sed 's/^/  | /' "$out.log" >&2
  sed 's/^/  /' "$out"
  return "$rc"
}

kv() { # kv FILE TAG LABEL KEY: the value of KEY=... on the first line "TAG LABEL ..." (LABEL "": any)
  awk -v tag="$2" -v label="$3" -v key="$4" '$1 == tag && (label == "" || $2 == label) {
    for (i = 2; i <= NF; i++) if (index($i, key "=") == 1) { print substr($i, length(key) + 2); exit }
  }' "$1"
}

settle() { sleep "$SETTLE_SECONDS"; }

watch_results="$state/watch-results.txt"
: >"$watch_results"

watch_phase() { # watch_phase N
  local n="$1" w so no before open kbefore kopen after
  echo
  echo "== watches at N=$n (each W: tenant space watches through the server, then admin namespace watches)"
  for w in "${watch_counts[@]}"; do
    settle
    alive_or_die
    echo "-- $w space watches ($USERS_N users), $GRANTS grants, held $WATCH_HOLD"
    so="$state/watch-s$w.out"
    watchload "$so" -resource spaces -watches "$w" -users "$USERS_N" -groups "$GROUPS_N" -grants "$GRANTS" \
      -hold "$WATCH_HOLD" -run "s$w" || die "the space watches failed (W=$w)"
    settle
    after="$(status_kb "$server_pid" VmRSS)"
    echo "-- $w namespace watches (admin, kube-apiserver), $GRANTS grants"
    no="$state/watch-n$w.out"
    watchload "$no" -resource namespaces -watches "$w" -grants "$GRANTS" -run "n$w" ||
      die "the namespace watches failed (W=$w)"
    before="$(kv "$so" RSS before server)"
    open="$(kv "$so" RSS open server)"
    kbefore="$(kv "$so" RSS before kube-apiserver)"
    kopen="$(kv "$so" RSS open kube-apiserver)"
    # W | server before | open | held | after closing | kube-apiserver before | open (spaces) | ns watches before | open
    # | spaces p50 p90 p99 max | namespaces p50 p90 p99 max
    echo "$w $before $open $(kv "$so" RSS held server) $after $kbefore $kopen" \
      "$(kv "$no" RSS before kube-apiserver) $(kv "$no" RSS open kube-apiserver)" \
      "$(kv "$so" GRANTS "" p50_ms) $(kv "$so" GRANTS "" p90_ms) $(kv "$so" GRANTS "" p99_ms) $(kv "$so" GRANTS "" max_ms)" \
      "$(kv "$no" GRANTS "" p50_ms) $(kv "$no" GRANTS "" p90_ms) $(kv "$no" GRANTS "" p99_ms) $(kv "$no" GRANTS "" max_ms)" \
      "$(kv "$so" USERS "" spaces_median)" >>"$watch_results"
  done
  settle
  echo "server RSS after the watch phase (all watches closed): $(mib "$(status_kb "$server_pid" VmRSS)")"
  print_watch_table
}

print_watch_table() {
  echo
  echo "watches at N=${sizes[0]}: server memory (per watch = (open - before) / W), grant latency (ms, all (watch, grant) pairs)"
  printf '%-6s %6s %10s %10s %10s %10s %9s | %12s %12s %9s | %-24s %-24s %8s\n' W views "srv before" "srv open" \
    "srv held" "srv closed" "KB/watch" "kapi +spaces" "kapi +ns" "KB/watch" "spaces p50/p99/max" "namespaces p50/p99/max" "p99 x"
  awk '{
    printf "%-6s %6s %10.1f %10.1f %10.1f %10.1f %9.1f | %+12.1f %+12.1f %9.1f | %-24s %-24s %7.2fx\n", $1, $18,
      $2 / 1024, $3 / 1024, $4 / 1024, $5 / 1024, ($3 - $2) / $1, ($7 - $6) / 1024, ($9 - $8) / 1024, ($9 - $8) / $1,
      $10 "/" $12 "/" $13, $14 "/" $16 "/" $17, ($16 > 0 ? $12 / $16 : 0)
  }' "$watch_results"
  echo "(views: the spaces each user sees; srv: the server's VmRSS in MiB (before opening, all open, after the grants"
  echo " and the hold, after closing); kapi: kube-apiserver's VmRSS growth in MiB while the W watches were open, through"
  echo " the aggregator for spaces and its own for namespaces; p99 x: the spaces p99 over the namespaces p99)"
}

# The server's allocator keeps much of what thousands of watches took after they close, and the sizes after the watch
# phase would measure that, not the cluster. So the server is started again there, as a rollout would: the same
# command line and port, its log appended, its new pid in the same pid file (down.sh stops it as before).
restart_server() {
  local old="$server_pid" args=() deadline stat
  mapfile -d '' -t args <"/proc/$old/cmdline"
  ((${#args[@]})) || die "cannot read the server's command line"
  kill -TERM "$old"
  deadline=$((SECONDS + 30))
  # up.sh started it, so it is not this script's child: once it exits, init reaps it (a zombie until then).
  while stat="$(ps -o stat= -p "$old" 2>/dev/null)" && [[ -n "$stat" && "$stat" != Z* ]]; do
    ((SECONDS < deadline)) || die "the server (pid $old) did not exit within 30 s of SIGTERM"
    sleep 0.2
  done
  RUST_LOG="${RUST_LOG:-info}" "${args[@]}" >>"$LOG_DIR/tenancy-apiserver.log" 2>&1 &
  server_pid=$!
  echo "$server_pid" >"$PID_DIR/tenancy-apiserver.pid"
  deadline=$((SECONDS + 60))
  until curl -sf --cacert "$SERVER_CA_CERT" "$SERVER_URL/readyz" >/dev/null 2>&1; do
    alive_or_die
    ((SECONDS < deadline)) || die "the restarted server did not get ready within 60 s"
    sleep 0.2
  done
}

# ------------------------------------------------------------------------------------------------------------ abuse
abuse_phase() {
  local ao io
  echo
  echo "== abuse at N=${sizes[-1]}: $ABUSE_WATCHES unread space watches held $ABUSE_HOLD (a change every $ABUSE_CHURN),"
  echo "   then $IDLE_CONNS idle TLS connections to the server's port held $IDLE_HOLD"
  settle
  ao="$state/abuse-unread.out"
  watchload "$ao" -resource spaces -read=false -watches "$ABUSE_WATCHES" -users "$USERS_N" -groups "$GROUPS_N" \
    -hold "$ABUSE_HOLD" -churn-every "$ABUSE_CHURN" -sample-every 5s -run "a$ABUSE_WATCHES" ||
    die "the unread watches failed"
  settle
  alive_or_die
  abuse_after_unread="$(status_kb "$server_pid" VmRSS)"
  io="$state/abuse-idle.out"
  watchload "$io" -idle-conns "$IDLE_CONNS" -hold "$IDLE_HOLD" -sample-every 5s || die "the idle connections failed"
  settle
  alive_or_die
  abuse_after_idle="$(status_kb "$server_pid" VmRSS)"
  echo
  echo "abuse: server VmRSS (MiB)"
  awk '$1 == "RSS" { sub("server=", "", $3); max = ($3 > max ? $3 : max) } $1 == "RSS" && $2 == "before" { b = $3 }
       $1 == "RSS" && $2 == "open" { o = $3 } $1 == "UNREAD" { u = $0 } $1 == "OPEN" { w = $2 }
       $1 == "USERS" { sub("spaces_median=", "", $4); v = $4 }
       END { printf "  unread watches: before %.1f, open %.1f, max while held %.1f (%.1f KB per watch, each user seeing %s spaces)\n  %s\n",
             b / 1024, o / 1024, max / 1024, (o - b) / w, v, u }' "$ao"
  echo "  after the unread watches closed: $(mib "$abuse_after_unread")"
  awk '$1 == "RSS" { sub("server=", "", $3); max = ($3 > max ? $3 : max) } $1 == "RSS" && $2 == "before" { b = $3 }
       $1 == "RSS" && $2 == "idle+0s" { o = $3 } $1 == "IDLE" && $2 != "holding" && $2 != "opened" { c = $0 }
       $1 == "IDLE" && $2 == "opened" { f = $0 } $1 == "IDLE" && $2 == "holding" { l = $0 }
       END { printf "  idle connections: before %.1f, all open %.1f, max while held %.1f\n  %s\n  %s\n  %s\n", b / 1024, o / 1024, max / 1024, f, l, c }' "$io"
  echo "  after the idle connections closed: $(mib "$abuse_after_idle")"
}

# ---------------------------------------------------------------------------------------------------------- summary
results="$state/results.txt"
: >"$results"
restarted=""

print_size_table() {
  echo
  echo "memory by cluster size (VmRSS/VmHWM after the lists; N=0: before any mem- namespace; ratio: the server's RSS"
  echo "over kube-apiserver's)"
  printf '%-7s %12s %12s %16s %7s\n' N "server RSS" "server HWM" "kube-apiserver" ratio
  awk '{ printf "%-7s %8.1f MiB %8.1f MiB %12.1f MiB %6.2fx\n", $1, $2 / 1024, $3 / 1024, $4 / 1024, $2 / $4 }' "$results"
  if [[ -n "$restarted" ]]; then
    echo "sizes after N=${sizes[0]}: the server was started again after the watch phase; at N=${sizes[0]} then: $restarted"
  elif ((${#watch_counts[@]} && ${#sizes[@]} > 1)); then
    echo "sizes after N=${sizes[0]} include what the server kept of the watch phase (BENCH_RESTART=0)"
  fi
  if (($(wc -l <"$results") > 1)); then
    echo "growth between sizes (each step adds, per namespace, 1 namespace + 2 RoleBindings):"
    awk 'NR > 1 { d = ($2 - r) / ($1 - n); dk = ($4 - k) / ($1 - n)
           printf "  %s -> %s: server %+.1f KB per namespace (%+.1f KB per RoleBinding, if /2), kube-apiserver %+.1f KB per namespace\n", n, $1, d, d / 2, dk }
         { n = $1; r = $2; k = $4 }' "$results"
  fi
}

verdict() { # verdict OK_EXPR: "met" or "MISSED" by awk's truth of OK_EXPR
  if awk "BEGIN { exit !($1) }"; then echo met; else echo MISSED; fi
}

print_summary() {
  local rss5 rss10 row w per p99s p99n
  echo
  echo "summary (targets beside the figures)"
  printf '  %-64s %-22s %-14s %s\n' what measured target ""
  rss5="$(awk '$1 == 5000 { print $2 }' "$results")"
  rss10="$(awk '$1 == 10000 { print $2 }' "$results")"
  if [[ -n "$rss5" ]]; then
    printf '  %-64s %-22s %-14s %s\n' "server RSS at 5,000 namespaces" "$(mib "$rss5")" "< 64 MB" \
      "$(verdict "$rss5 < 64 * 1024")"
  fi
  if [[ -n "$rss10" ]]; then
    printf '  %-64s %-22s %-14s %s\n' "server RSS at 10,000 namespaces" "$(mib "$rss10")" "< 100 MB" \
      "$(verdict "$rss10 < 100 * 1024")"
  fi
  while read -r row; do
    read -r w _ _ _ _ _ _ _ _ _ _ p99s _ _ _ p99n _ <<<"$row"
    per="$(awk -v a="$(cut -d' ' -f3 <<<"$row")" -v b="$(cut -d' ' -f2 <<<"$row")" -v w="$w" 'BEGIN { printf "%.1f", (a - b) / w }')"
    printf '  %-64s %-22s %-14s %s\n' "server memory per open watch, $w watches at N=${sizes[0]}" "$per KB" "< 10 KB" \
      "$(verdict "$per < 10")"
    printf '  %-64s %-22s %-14s %s\n' "grant p99 through the server vs kube-apiserver, $w watches" \
      "$p99s vs $p99n ms" "<= 1.5x" "$(awk -v a="$p99s" -v b="$p99n" 'BEGIN { printf "%.2fx ", a / b }')$(verdict "$p99s <= 1.5 * $p99n")"
  done <"$watch_results"
}

# -------------------------------------------------------------------------------------------------------------- run
echo "memory benchmark: sizes ${sizes[*]}; watches ${watch_counts[*]:-none} at N=${sizes[0]}; abuse=$ABUSE;" \
  "$(nproc) CPUs, load $(loadavg)"
echo "file descriptor limits: this script $(ulimit -n), kube-apiserver $(fd_limit "$apiserver_pid"), server $(fd_limit "$server_pid")"
echo "0 $(status_kb "$server_pid" VmRSS) $(status_kb "$server_pid" VmHWM) $(status_kb "$apiserver_pid" VmRSS)" >>"$results"
echo "server: release build, pid $server_pid, RSS $(mib "$(awk '{ print $2 }' "$results")") before any mem- namespace;" \
  "kube-apiserver $(mib "$(awk '{ print $4 }' "$results")")"
prev=0
for n in "${sizes[@]}"; do
  echo
  echo "== N=$n"
  grow_world "$prev" "$n"
  prev=$n
  wait_caught_up "$n"
  wait_settled
  run_lists "$n"
  sleep 2
  alive_or_die
  rss="$(status_kb "$server_pid" VmRSS)"
  hwm="$(status_kb "$server_pid" VmHWM)"
  kapi="$(status_kb "$apiserver_pid" VmRSS)"
  echo "$n $rss $hwm $kapi" >>"$results"
  echo "memory: server RSS $(mib "$rss") (HWM $(mib "$hwm")), kube-apiserver RSS $(mib "$kapi"); load $(loadavg)"
  if [[ "$n" == "${sizes[0]}" ]] && ((${#watch_counts[@]})); then
    watch_phase "$n"
    if [[ "$RESTART" == 1 ]] && ((${#sizes[@]} > 1 || ABUSE == 1)); then
      echo
      echo "restarting the server after the watch phase (RSS $(mib "$(status_kb "$server_pid" VmRSS)")) so that later sizes measure the cluster"
      restart_server
      wait_caught_up "$n"
      sleep 2
      restarted="RSS $(mib "$(status_kb "$server_pid" VmRSS)") (HWM $(mib "$(status_kb "$server_pid" VmHWM)")),"
      restarted+=" kube-apiserver $(mib "$(status_kb "$apiserver_pid" VmRSS)")"
      echo "restarted at N=$n and caught up: $restarted"
    fi
  fi
done
if [[ "$ABUSE" == 1 ]]; then
  abuse_phase
fi

print_size_table
((${#watch_counts[@]})) && print_watch_table
print_summary
echo
echo "Whole run: $((SECONDS - run_start)) s; load average at the end $(loadavg)."
