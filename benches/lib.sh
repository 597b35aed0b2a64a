# Owns: what the end-to-end benchmarks (e2e_list.sh, memory.sh) do alike to a local control plane's world: growing it
# in parallel chunks of `kubectl create`, and waiting until kube-controller-manager has caught up with it. Sourced, not
# run. The sourcing script defines `world_yaml FROM TO` (its namespaces FROM..TO-1, each followed by its RoleBindings),
# `k` (kubectl as the admin), `die`, and sets CHUNK_NAMESPACES, CREATE_JOBS, SETTLE_TIMEOUT, LOG_DIR and
# BINDINGS_PER_NAMESPACE.
# shellcheck shell=bash

grow_world() { # grow_world FROM TO
  local from="$1" to="$2" start=$EPOCHREALTIME chunk_from chunk_to running=0 failed=0
  for ((chunk_from = from; chunk_from < to; chunk_from += CHUNK_NAMESPACES)); do
    chunk_to=$((chunk_from + CHUNK_NAMESPACES < to ? chunk_from + CHUNK_NAMESPACES : to))
    # Chunks run side by side because one kubectl creates objects one request at a time, which leaves
    # kube-apiserver idle between round trips. Each chunk holds its namespaces before their bindings.
    world_yaml "$chunk_from" "$chunk_to" |
      k create -f - >/dev/null 2>"$LOG_DIR/bench-create-$chunk_from.log" &
    running=$((running + 1))
    if ((running >= CREATE_JOBS)); then
      wait -n || failed=1
      running=$((running - 1))
    fi
  done
  while ((running > 0)); do
    wait -n || failed=1
    running=$((running - 1))
  done
  if ((failed)); then
    cat "$LOG_DIR"/bench-create-*.log >&2
    die "creating namespaces $from..$((to - 1)) failed"
  fi
  local namespaces=$((to - from))
  local objects=$((namespaces * (1 + BINDINGS_PER_NAMESPACE)))
  awk -v a="$start" -v b="$EPOCHREALTIME" -v n="$objects" -v ns="$namespaces" \
    'BEGIN { printf "created %d namespaces + %d RoleBindings (%d objects) in %.1f s, %.0f objects/s\n", ns, n - ns, n, b - a, n / (b - a) }'
}

# kube-controller-manager gives every new namespace a `default` ServiceAccount and a kube-root-ca.crt ConfigMap at its
# client rate limit, so it keeps writing for minutes after a large world is created. While anything writes,
# kube-apiserver's consistent lists wait for the watch cache's next progress notification (~100 ms), and memory sampled
# then is the middle of a burst; so timing and sampling start once the cluster is quiet.
wait_settled() {
  local start=$EPOCHREALTIME deadline=$((SECONDS + SETTLE_TIMEOUT)) all_ns sa cm
  all_ns="$(k get namespaces -o name | wc -l)"
  while :; do
    sa="$(k get serviceaccounts -A --field-selector metadata.name=default -o name | wc -l)"
    cm="$(k get configmaps -A --field-selector metadata.name=kube-root-ca.crt -o name | wc -l)"
    ((sa >= all_ns && cm >= all_ns)) && break
    ((SECONDS < deadline)) ||
      die "kube-controller-manager did not finish the new namespaces within ${SETTLE_TIMEOUT}s ($sa ServiceAccounts, $cm ConfigMaps, $all_ns namespaces)"
    sleep 2
  done
  awk -v a="$start" -v b="$EPOCHREALTIME" \
    'BEGIN { printf "cluster settled after %.1f s more (kube-controller-manager done with every namespace)\n", b - a }'
}
