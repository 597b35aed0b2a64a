#!/usr/bin/env bash
# Owns: starting a throwaway local control plane (etcd, kube-apiserver, kube-controller-manager, and the authorization
# webhook authz-webhook/ that kube-apiserver consults before RBAC for users named webhook-*) in STATE_DIR for the
# tests: its PKI, static user tokens, kubeconfigs, authorization configuration and the sourceable STATE_DIR/env.
# Everything listens on 127.0.0.1 only, on free ports picked at start, so several control planes can run side by side.
# Stop it with down.sh STATE_DIR.
#
# Usage: up.sh STATE_DIR   -> progress on stderr; prints the path of STATE_DIR/env on stdout's last line.
# With CONTROLPLANE_AUDIT_WEBHOOK_KUBECONFIG set, kube-apiserver sends its audit events there (deploy/audit-policy.yaml,
# batches of at most 1 s), as a platform does for sleep mode.
#
# Each run starts a fresh cluster: the previous etcd data, PKI, tokens and kubeconfigs in STATE_DIR are replaced.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
STATE_DIR="$(cd "$1" && pwd)"
PKI="$STATE_DIR/pki"
LOGS="$STATE_DIR/logs"
PIDS="$STATE_DIR/pids"
KUBECONFIGS="$STATE_DIR/kubeconfigs"

# Deadlines in seconds; overridable because slow CI machines need more than a laptop does.
ETCD_TIMEOUT="${CONTROLPLANE_ETCD_TIMEOUT:-30}"
APISERVER_TIMEOUT="${CONTROLPLANE_APISERVER_TIMEOUT:-60}"
KCM_TIMEOUT="${CONTROLPLANE_KCM_TIMEOUT:-60}"
WEBHOOK_TIMEOUT="${CONTROLPLANE_WEBHOOK_TIMEOUT:-10}"

start_time=$EPOCHREALTIME
log() { echo "controlplane: $*" >&2; }
elapsed() { awk -v a="$start_time" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# The log that explains the current step; its tail is shown when the step fails.
current_log=""
started=0
succeeded=0
reported=0

show_log() {
  if [[ -n "$current_log" && -f "$current_log" ]]; then
    echo "----- last 40 lines of $current_log -----" >&2
    tail -n 40 "$current_log" >&2 || true
    echo "-----" >&2
  fi
}

fail() {
  reported=1
  log "FAILED: $*"
  show_log
  exit 1
}

on_exit() {
  local rc=$?
  [[ $succeeded -eq 1 ]] && exit "$rc"
  if [[ $reported -eq 0 ]]; then
    log "FAILED: a command exited with status $rc"
    show_log
  fi
  if [[ $started -eq 1 ]]; then
    log "stopping what was started"
    "$here/down.sh" "$STATE_DIR" >&2 || true
  fi
  [[ $rc -eq 0 ]] && rc=1
  exit "$rc"
}
trap on_exit EXIT
# Without this, an interrupted start would leave half a control plane running.
trap 'fail "interrupted"' INT TERM

alive() { # alive PID: running and not a zombie (our own children stay zombies until this script exits)
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z* ]]
}

# Refuse to start over a running control plane: its pid files would be overwritten and its processes orphaned.
if [[ -d "$PIDS" ]]; then
  for f in "$PIDS"/*.pid; do
    [[ -e "$f" ]] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid"; then
      fail "$f: pid $pid is still running; run $here/down.sh $STATE_DIR first"
    fi
  done
fi

log "building/locating binaries"
build_out="$("$here/build.sh")"
BIN_DIR="$(tail -n 1 <<<"$build_out")"
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [[ -x "$BIN_DIR/$b" ]] || fail "build.sh did not produce $BIN_DIR/$b"
done
KUBECTL="$BIN_DIR/kubectl"
AUTHZ_WEBHOOK_BIN="$(sed -n 's/^authz-webhook=//p' <<<"$build_out")"
[[ -n "$AUTHZ_WEBHOOK_BIN" && -x "$AUTHZ_WEBHOOK_BIN" ]] || fail "build.sh did not produce the authz-webhook binary"
AUTHZ_CONFIG="$STATE_DIR/authorization-config.yaml"

rm -rf "$PKI" "$STATE_DIR/etcd" "$KUBECONFIGS" "$STATE_DIR/tokens.csv" "$STATE_DIR/env" "$AUTHZ_CONFIG"
mkdir -p "$PKI" "$LOGS" "$PIDS" "$KUBECONFIGS"
chmod 700 "$PKI"

# ---------------------------------------------------------------------------------------------------------------- PKI
log "generating PKI in $PKI"

# A private minimal openssl config, so the result does not depend on the distribution's openssl.cnf defaults.
cat >"$PKI/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[apiserver]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, IP:10.0.0.1
EOF

ossl() { openssl "$@" 2>>"$PKI/openssl.log"; }
current_log="$PKI/openssl.log"

new_key() { # new_key NAME: EC P-256, because it is fast to generate and every component accepts it
  ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key"
  chmod 600 "$PKI/$1.key"
}

new_ca() { # new_ca NAME CN
  new_key "$1"
  ossl req -config "$PKI/openssl.cnf" -x509 -new -sha256 -days 3650 -key "$PKI/$1.key" -subj "/CN=$2" \
    -extensions ca -out "$PKI/$1.crt"
}

new_cert() { # new_cert NAME SUBJECT CA_NAME EXTENSIONS_SECTION
  new_key "$1"
  ossl req -config "$PKI/openssl.cnf" -new -sha256 -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
  ossl x509 -req -sha256 -days 365 -in "$PKI/$1.csr" -CA "$PKI/$3.crt" -CAkey "$PKI/$3.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$PKI/openssl.cnf" -extensions "$4" -out "$PKI/$1.crt"
  rm -f "$PKI/$1.csr"
}

new_ca ca "tenancy-test-cluster-ca"
new_cert apiserver "/CN=kube-apiserver" ca apiserver
new_cert admin "/O=system:masters/CN=admin" ca client
new_cert kube-controller-manager "/CN=system:kube-controller-manager" ca client
# The front-proxy CA must differ from the cluster CA: otherwise any cluster client cert could assert identities
# through the requestheader headers.
new_ca front-proxy-ca "tenancy-test-front-proxy-ca"
new_cert front-proxy-client "/CN=front-proxy-client" front-proxy-ca client
# Service-account tokens are signed with RSA, the algorithm every token consumer supports.
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
chmod 600 "$PKI/sa.key"
ossl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

# ------------------------------------------------------------------------------------------------------------- tokens
declare -A TOKENS GROUPS_OF=([alice]=team-a [bob]=team-a [carol]=team-b [dave]=auditors)
USERS=(alice bob carol dave)
: >"$STATE_DIR/tokens.csv"
chmod 600 "$STATE_DIR/tokens.csv"
for u in "${USERS[@]}"; do
  TOKENS[$u]="$(openssl rand -hex 24)"
  printf '%s,%s,%s,"%s"\n' "${TOKENS[$u]}" "$u" "uid-$u" "${GROUPS_OF[$u]}" >>"$STATE_DIR/tokens.csv"
done

# -------------------------------------------------------------------------------------------------------------- ports
# All five ports are bound at once so they are distinct; the small window until the components bind them is accepted.
read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT AUTHZ_WEBHOOK_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')
ETCD_URL="http://127.0.0.1:$ETCD_PORT"
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
AUTHZ_WEBHOOK_URL="http://127.0.0.1:$AUTHZ_WEBHOOK_PORT"

# Starts a component detached from our stdin/stdout (so callers capturing our output are not held open by it) with
# its output in LOGS/NAME.log and its pid in PIDS/NAME.pid. Its command line is kept NUL-separated in
# STATE_DIR/cmd/NAME.args, so restart.sh can start it again exactly as it was.
start() { # start NAME BINARY ARGS...
  local name="$1"
  shift
  current_log="$LOGS/$name.log"
  started=1
  mkdir -p "$STATE_DIR/cmd"
  printf '%s\0' "$@" >"$STATE_DIR/cmd/$name.args"
  "$@" </dev/null >"$current_log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!, log $current_log)"
}

# Polls CHECK until it succeeds, failing early if the component's process died.
wait_for() { # wait_for NAME TIMEOUT DESCRIPTION CHECK...
  local name="$1" timeout="$2" what="$3"
  shift 3
  local pid deadline=$((SECONDS + timeout))
  pid="$(cat "$PIDS/$name.pid")"
  until "$@" >/dev/null 2>&1; do
    alive "$pid" || fail "$name (pid $pid) exited while waiting for $what"
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
  log "$what after $(elapsed)"
}

# --------------------------------------------------------------------------------------------------------------- etcd
start etcd "$BIN_DIR/etcd" \
  --name controlplane \
  --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls "$ETCD_URL" \
  --advertise-client-urls "$ETCD_URL" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "controlplane=http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster-state new \
  --unsafe-no-fsync \
  --quota-backend-bytes $((4 * 1024 * 1024 * 1024)) \
  --log-level warn

etcd_healthy() {
  python3 - "$ETCD_URL/health" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if json.load(r).get("health") == "true" else 1)
EOF
}
wait_for etcd "$ETCD_TIMEOUT" "etcd healthy" etcd_healthy

# ----------------------------------------------------------------------------------------------------- authz-webhook
# Plain HTTP on loopback: kube-apiserver accepts an http:// server in the webhook kubeconfig, and nothing here needs
# the webhook to authenticate kube-apiserver. It is a process of its own, so it outlives kube-apiserver restarts.
start authz-webhook "$AUTHZ_WEBHOOK_BIN" -port "$AUTHZ_WEBHOOK_PORT"
webhook_healthy() { [[ "$(curl -sf --max-time 2 "$AUTHZ_WEBHOOK_URL/healthz")" == ok ]]; }
wait_for authz-webhook "$WEBHOOK_TIMEOUT" "authz-webhook healthy at $AUTHZ_WEBHOOK_URL" webhook_healthy

AUTHZ_WEBHOOK_KUBECONFIG="$KUBECONFIGS/authz-webhook.kubeconfig"
cat >"$AUTHZ_WEBHOOK_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: authz-webhook
  cluster:
    server: $AUTHZ_WEBHOOK_URL/authorize
users:
- name: kube-apiserver
  user: {}
contexts:
- name: webhook
  context:
    cluster: authz-webhook
    user: kube-apiserver
current-context: webhook
EOF

# The webhook first, but only for users named webhook-*, so every other request costs nothing and RBAC alone decides
# it as before. Its decisions are not cached, so a test sees a change of policy (or of the webhook) at once; if it is
# down or slow, it has no opinion and RBAC decides.
cat >"$AUTHZ_CONFIG" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AuthorizationConfiguration
authorizers:
- type: Webhook
  name: authz-webhook
  webhook:
    timeout: 3s
    subjectAccessReviewVersion: v1
    matchConditionSubjectAccessReviewVersion: v1
    failurePolicy: NoOpinion
    cacheAuthorizedRequests: false
    cacheUnauthorizedRequests: false
    connectionInfo:
      type: KubeConfigFile
      kubeConfigFile: $AUTHZ_WEBHOOK_KUBECONFIG
    matchConditions:
    - expression: "request.user.startsWith('webhook-')"
- type: RBAC
  name: rbac
EOF

# ---------------------------------------------------------------------------------------------------- kube-apiserver
audit_flags=()
if [[ -n "${CONTROLPLANE_AUDIT_WEBHOOK_KUBECONFIG:-}" ]]; then
  audit_flags=(--audit-policy-file "$here/../../deploy/audit-policy.yaml"
    --audit-webhook-config-file "$CONTROLPLANE_AUDIT_WEBHOOK_KUBECONFIG" --audit-webhook-batch-max-wait 1s)
fi
start kube-apiserver "$BIN_DIR/kube-apiserver" "${audit_flags[@]}" \
  --bind-address 127.0.0.1 \
  --advertise-address 127.0.0.1 \
  --secure-port "$APISERVER_PORT" \
  --etcd-servers "$ETCD_URL" \
  --endpoint-reconciler-type none \
  --service-cluster-ip-range 10.0.0.0/24 \
  --authorization-config "$AUTHZ_CONFIG" \
  --tls-cert-file "$PKI/apiserver.crt" \
  --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --token-auth-file "$STATE_DIR/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$PKI/sa.pub" \
  --service-account-signing-key-file "$PKI/sa.key" \
  --api-audiences https://kubernetes.default.svc \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
  --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User \
  --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --requestheader-uid-headers X-Remote-Uid \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
  --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=false \
  --allow-privileged \
  --enable-priority-and-fairness=false \
  --profiling=false

# ------------------------------------------------------------------------------------------------------- kubeconfigs
b64() { base64 <"$1" | tr -d '\n'; }
CA_DATA="$(b64 "$PKI/ca.crt")"

write_kubeconfig() { # write_kubeconfig NAME USER_YAML (credentials are embedded so the file can be copied anywhere)
  cat >"$KUBECONFIGS/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tenancy-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $CA_DATA
users:
- name: $1
  user:
$2
contexts:
- name: $1@tenancy-test
  context:
    cluster: tenancy-test
    user: $1
current-context: $1@tenancy-test
EOF
  chmod 600 "$KUBECONFIGS/$1.kubeconfig"
}

cert_user() { # cert_user CERT_NAME
  printf '    client-certificate-data: %s\n    client-key-data: %s' "$(b64 "$PKI/$1.crt")" "$(b64 "$PKI/$1.key")"
}

write_kubeconfig admin "$(cert_user admin)"
write_kubeconfig kube-controller-manager "$(cert_user kube-controller-manager)"
for u in "${USERS[@]}"; do
  write_kubeconfig "$u" "    token: ${TOKENS[$u]}"
done
KUBECONFIG_ADMIN="$KUBECONFIGS/admin.kubeconfig"

admin() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout 5s "$@"; }
apiserver_ready() { [[ "$(admin get --raw /readyz 2>/dev/null)" == ok ]]; }
current_log="$LOGS/kube-apiserver.log"
wait_for kube-apiserver "$APISERVER_TIMEOUT" "kube-apiserver ready at $APISERVER_URL" apiserver_ready

# ------------------------------------------------------------------------------------------- kube-controller-manager
KCM_KUBECONFIG="$KUBECONFIGS/kube-controller-manager.kubeconfig"
start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig "$KCM_KUBECONFIG" \
  --authentication-kubeconfig "$KCM_KUBECONFIG" \
  --authorization-kubeconfig "$KCM_KUBECONFIG" \
  --bind-address 127.0.0.1 \
  --secure-port "$KCM_PORT" \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file "$PKI/sa.key" \
  --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" \
  --cluster-signing-key-file "$PKI/ca.key" \
  --controllers namespace-controller,garbage-collector-controller,clusterrole-aggregation-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,resourcequota-controller,deployment-controller,replicaset-controller,statefulset-controller \
  --profiling=false

default_sa_exists() { admin get serviceaccount default --namespace default; }
admin_role_aggregated() {
  local rules
  rules="$(admin get clusterrole admin -o 'jsonpath={.rules}')"
  [[ -n "$rules" && "$rules" != "[]" && "$rules" != "null" ]]
}
wait_for kube-controller-manager "$KCM_TIMEOUT" "serviceaccount controller running (default/default exists)" \
  default_sa_exists
wait_for kube-controller-manager "$KCM_TIMEOUT" "clusterrole aggregation running (admin has rules)" \
  admin_role_aggregated

# ---------------------------------------------------------------------------------------------------------------- env
{
  echo "# Written by $here/up.sh; source it to talk to the control plane in this directory."
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q STATE_DIR "$STATE_DIR"
  q BIN_DIR "$BIN_DIR"
  q KUBECTL "$KUBECTL"
  q APISERVER_URL "$APISERVER_URL"
  q APISERVER_PORT "$APISERVER_PORT"
  q ETCD_URL "$ETCD_URL"
  q KCM_PORT "$KCM_PORT"
  q AUTHZ_WEBHOOK_URL "$AUTHZ_WEBHOOK_URL"
  q AUTHZ_WEBHOOK_BIN "$AUTHZ_WEBHOOK_BIN"
  q AUTHZ_CONFIG "$AUTHZ_CONFIG"
  q PKI_DIR "$PKI"
  q CA_CERT "$PKI/ca.crt"
  q FRONT_PROXY_CA_CERT "$PKI/front-proxy-ca.crt"
  q FRONT_PROXY_CLIENT_CERT "$PKI/front-proxy-client.crt"
  q FRONT_PROXY_CLIENT_KEY "$PKI/front-proxy-client.key"
  q KUBECONFIG_DIR "$KUBECONFIGS"
  q KUBECONFIG_ADMIN "$KUBECONFIG_ADMIN"
  q KUBECONFIG_KCM "$KCM_KUBECONFIG"
  for u in "${USERS[@]}"; do
    q "KUBECONFIG_${u^^}" "$KUBECONFIGS/$u.kubeconfig"
    q "TOKEN_${u^^}" "${TOKENS[$u]}"
  done
  q LOG_DIR "$LOGS"
  q PID_DIR "$PIDS"
} >"$STATE_DIR/env"

succeeded=1
log "control plane up in $(elapsed): $APISERVER_URL (source $STATE_DIR/env)"
echo "$STATE_DIR/env"
