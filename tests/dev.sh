#!/usr/bin/env bash
# Owns: `make dev` — the product on a local control plane with the demo tenants (tests/fixtures/demo-tenants.yaml),
# their spaces created by the tenants themselves, left running, and a first look at what each one sees.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${1:?usage: dev.sh STATE_DIR}"
env_file="$("$repo/tests/env/up.sh" "$state" | tail -n 1)"
# shellcheck disable=SC1090
source "$env_file"
"$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" apply -f "$repo/tests/fixtures/demo-tenants.yaml" >/dev/null
(cd "$repo" && cargo build --quiet --bin kubectl-space)
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"

# A tenant creates a space as with any resource; the first try may come before kube-apiserver knows the new Account's
# RBAC, so each is retried for a while.
create_space() {
  local user="$1" name="$2" tier="${3:-}" kubeconfig="KUBECONFIG_${1^^}" manifest
  manifest="apiVersion: tenancy.loft.sh/v1
kind: Space
metadata: {name: $name}"
  [[ -n "$tier" ]] && manifest+="
spec: {templateParameters: {tier: $tier}}"
  for _ in $(seq 100); do
    "$KUBECTL" --kubeconfig "${!kubeconfig}" create -f - <<<"$manifest" >/dev/null 2>&1 && return 0
    "$KUBECTL" --kubeconfig "${!kubeconfig}" get space "$name" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "dev: $user could not create space $name:" >&2
  "$KUBECTL" --kubeconfig "${!kubeconfig}" create -f - <<<"$manifest" >&2
}
create_space alice team-a-dev gold
create_space alice team-a-prod
create_space carol team-b-dev

show() {
  local user="$1" kubeconfig="KUBECONFIG_${1^^}"
  shift
  echo
  echo "\$ kubectl $*   # as $user"
  "$KUBECTL" --kubeconfig "${!kubeconfig}" "$@"
}
show alice get spaces -o wide
show alice get accounts
show alice get configmap space-info -n team-a-dev -o jsonpath='{.data}{"\n"}'
show carol get spaces
show admin get spaces

# alice publishes a service of team-a-dev at its space domain; cert-manager issues its certificate from the shared
# ClusterIssuer (the space may still be filling its quota and service account: retried for a while).
for _ in $(seq 50); do
  "$KUBECTL" --kubeconfig "$KUBECONFIG_ALICE" create service clusterip web --tcp=80:8080 -n team-a-dev >/dev/null 2>&1 &&
    break
  sleep 0.2
done
echo
echo "\$ kubectl space expose web -n team-a-dev   # as alice"
KUBECONFIG="$KUBECONFIG_ALICE" "$target_dir/debug/kubectl-space" expose web -n team-a-dev || true
for _ in $(seq 60); do
  [[ "$("$KUBECTL" --kubeconfig "$KUBECONFIG_ALICE" get certificate web-tls -n team-a-dev \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] && break
  sleep 0.5
done
show alice get certificate -n team-a-dev
cat <<MSG

Running. Try it yourself:
  source $env_file
  \$KUBECTL --kubeconfig \$KUBECONFIG_ALICE get spaces      # also \$KUBECONFIG_BOB, _CAROL, _DAVE, _ADMIN
  \$KUBECTL --kubeconfig \$KUBECONFIG_ALICE create -f - <<<'{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"team-a-test"}}'
  \$KUBECTL --kubeconfig \$KUBECONFIG_ADMIN get accountquota team-a -o yaml   # one quota over team-a's spaces

The web console, as alice (a browser opens; Ctrl-C stops it):
  PATH="$target_dir/debug:$(dirname "$KUBECTL"):\$PATH" KUBECONFIG=\$KUBECONFIG_ALICE kubectl space console
  # or: \$KUBECTL --kubeconfig \$KUBECONFIG_ALICE proxy --port 8001, then open
  #     http://127.0.0.1:8001/apis/tenancy.loft.sh/v1/console/   (as admin with \$KUBECONFIG_ADMIN: the platform view)
Server log: $LOG_DIR/tenancy-apiserver.log    Stop: make down
MSG
