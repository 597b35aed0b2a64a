#!/usr/bin/env bash
# A space create's latency straight at a server process (front-proxy identity, no kubectl), for one or more builds of
# the server run in turn against the same local control plane: p50 and p99 of N creates each, by an Account's member.
#
#   TENANCY_E2E_ENV=<env file of tests/env/up.sh> benches/create_latency.sh N BIN [BIN ...]
#
# Each BIN is started as a replica beside the running one (its own port, the same identity and serving certificate),
# gets N creates, and is stopped; the rounds alternate twice so that the machine's load falls on every build alike.
set -euo pipefail

n="${1:?usage: create_latency.sh N BIN [BIN ...]}"
shift
[[ $# -ge 1 ]] || { echo "usage: create_latency.sh N BIN [BIN ...]" >&2; exit 2; }
# shellcheck disable=SC1090
source "${TENANCY_E2E_ENV:?source of tests/env/up.sh}"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

run="bench$$"
group="$run-team"
k apply -f - >/dev/null <<YAML
apiVersion: config.tenancy.loft.sh/v1
kind: Account
metadata: {name: $run}
spec:
  subjects: [{kind: Group, name: $group}]
  space: {limit: 100000, templates: []}
YAML

start() {
  local bin="$1" port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  RUST_LOG=warn "$bin" serve --bind-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$STATE_DIR/serving/tls.crt" --tls-private-key-file "$STATE_DIR/serving/tls.key" \
    --kubeconfig "$KUBECONFIG_DIR/tenancy-apiserver.kubeconfig" >"$STATE_DIR/bench-replica.log" 2>&1 &
  pid=$!
  url="https://127.0.0.1:$port"
  until curl -sf --cacert "$STATE_DIR/serving/ca.crt" "$url/readyz" >/dev/null 2>&1; do sleep 0.2; done
}

creates() {
  local label="$1" i times=()
  for ((i = 0; i < n; i++)); do
    times+=("$(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --cacert "$STATE_DIR/serving/ca.crt" \
      --cert "$FRONT_PROXY_CLIENT_CERT" --key "$FRONT_PROXY_CLIENT_KEY" \
      -H "X-Remote-User: $run-user" -H "X-Remote-Group: $group" -H 'Content-Type: application/json' \
      -X POST "$url/apis/tenancy.loft.sh/v1/spaces" \
      --data "{\"apiVersion\":\"tenancy.loft.sh/v1\",\"kind\":\"Space\",\"metadata\":{\"generateName\":\"$run-\"}}")")
  done
  printf '%s\n' "${times[@]}" | python3 -c '
import sys
rows = [line.split() for line in sys.stdin if line.strip()]
bad = [code for code, _ in rows if code != "201"]
ms = sorted(float(t) * 1000 for _, t in rows)
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"{sys.argv[1]}: {len(ms)} creates, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms" + (f", {len(bad)} not 201: {bad[:3]}" if bad else ""))
' "$label"
}

for round in 1 2; do
  for bin in "$@"; do
    start "$bin"
    creates "round $round, $bin"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
k delete namespace -l "tenancy.loft.sh/account=$run" --wait=false >/dev/null
k delete account.config.tenancy.loft.sh "$run" >/dev/null
