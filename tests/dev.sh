#!/usr/bin/env bash
# Owns: `make dev` — the product on a local control plane with the demo tenants, left running, and a first look at
# what each tenant sees.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${1:?usage: dev.sh STATE_DIR}"
env_file="$("$repo/tests/env/up.sh" "$state" | tail -n 1)"
# shellcheck disable=SC1090
source "$env_file"
"$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" apply -f "$repo/tests/fixtures/demo-tenants.yaml" >/dev/null
# The server's caches see the demo objects within milliseconds; wait for alice's view rather than guessing.
for _ in $(seq 50); do
  [[ "$("$KUBECTL" --kubeconfig "$KUBECONFIG_ALICE" get spaces -o name 2>/dev/null | wc -l)" == 2 ]] && break
  sleep 0.1
done
for user in alice carol admin; do
  var="KUBECONFIG_${user^^}"
  echo
  echo "\$ kubectl get spaces   # as $user"
  "$KUBECTL" --kubeconfig "${!var}" get spaces
done
cat <<MSG

Running. Try it yourself:
  source $env_file
  \$KUBECTL --kubeconfig \$KUBECONFIG_ALICE get spaces      # also \$KUBECONFIG_BOB, _CAROL, _DAVE (auditors), _ADMIN
  \$KUBECTL --kubeconfig \$KUBECONFIG_ADMIN --as zed --as-group team-b get spaces
Server log: $LOG_DIR/tenancy-apiserver.log    Stop: make down
MSG
