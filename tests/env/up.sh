#!/usr/bin/env bash
# Owns: the whole product on a local control plane, in STATE_DIR: the control plane (tests/controlplane/up.sh), the
# server built from this checkout with its serving certificate and its own ServiceAccount identity holding only the
# RBAC in deploy/, and the local APIService (apiservice/local/) — waited on until kube-apiserver reports it Available.
# Stop everything with tests/controlplane/down.sh STATE_DIR.
#
# Usage: up.sh STATE_DIR   -> progress on stderr; prints the path of STATE_DIR/env on stdout's last line.
#        TENANCY_PROFILE=release up.sh STATE_DIR   -> the same with the release binary the image ships, built by
#                                                    deploy/build-binary.sh (benchmarks, and CI's soak).
#        TENANCY_ACCESS_MODE=sar up.sh STATE_DIR   -> the server decides visibility by SubjectAccessReview
#                                                    (--access-mode=sar) instead of its RBAC index.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { echo "env: $*" >&2; }
start=$SECONDS

# Debug stays the default because tests rebuild often and a release build is minutes slower; timings are only
# meaningful from an optimized build, so benchmarks opt in. Checked before anything starts, so a typo costs nothing.
profile="${TENANCY_PROFILE:-debug}"
case "$profile" in
  # Test builds carry the fault-injection hooks (the crash tests need them); the release binary has none.
  debug | release) ;;
  *)
    log "TENANCY_PROFILE must be debug or release, not '$profile'"
    exit 2
    ;;
esac

access_mode="${TENANCY_ACCESS_MODE:-rbac}"
case "$access_mode" in
  rbac | sar) ;;
  *)
    log "TENANCY_ACCESS_MODE must be rbac or sar, not '$access_mode'"
    exit 2
    ;;
esac

env_file="$("$repo/tests/controlplane/up.sh" "$1" | tail -n 1)"
# shellcheck disable=SC1090
source "$env_file"
fail() {
  log "$*"
  [[ -f "$LOG_DIR/tenancy-apiserver.log" ]] && tail -n 40 "$LOG_DIR/tenancy-apiserver.log" >&2
  "$repo/tests/controlplane/down.sh" "$STATE_DIR" >&2 || true
  exit 1
}
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# helm renders the chart for the install tests (tests/e2e/install.rs); cached by version like the control plane.
helm_bin="$("$repo/tests/install/helm.sh" | tail -n 1)" || fail "building helm failed"

log "building the server ($profile)"
if [[ "$profile" = release ]]; then
  # The image's build (Dockerfile), for this host's target: the same command and static-binary check.
  server_bin="$("$repo/deploy/build-binary.sh")" || fail "deploy/build-binary.sh failed"
else
  (cd "$repo" && cargo build --quiet --features fault-injection --bin tenancy-apiserver) || fail "cargo build failed"
  # Where cargo put it: CARGO_TARGET_DIR (relative to the repo, where cargo ran) when set, as when checkouts share one.
  target_dir="${CARGO_TARGET_DIR:-target}"
  [[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"
  server_bin="$target_dir/debug/tenancy-apiserver"
fi

serving="$STATE_DIR/serving"
"$server_bin" certs --out-dir "$serving" --extra-san localhost --extra-san 127.0.0.1 >&2

k apply -f "$repo/deploy/namespace.yaml" -f "$repo/deploy/crds.yaml" -f "$repo/deploy/rbac.yaml" \
  -f "$repo/deploy/tenant-rbac.yaml" -f "$repo/deploy/admission.yaml" >&2
k wait --for=condition=Established crd/accounts.config.tenancy.loft.sh crd/spacetemplates.config.tenancy.loft.sh \
  --timeout=30s >&2
k apply -f "$repo/deploy/default-template.yaml" >&2

# The server runs as its ServiceAccount, with a token as a pod would have one: its RBAC is exactly deploy/'s.
token="$(k create token tenancy-apiserver -n tenancy-system --duration=24h)"
server_kubeconfig="$KUBECONFIG_DIR/tenancy-apiserver.kubeconfig"
cat >"$server_kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: $APISERVER_URL
      certificate-authority-data: $(base64 -w0 <"$CA_CERT")
users:
  - name: tenancy-apiserver
    user:
      token: $token
contexts:
  - name: tenancy-apiserver
    context: {cluster: local, user: tenancy-apiserver}
current-context: tenancy-apiserver
KUBECONFIG

# Each space owns <namespace>.apps.test (kube-apiserver refuses other hostnames to tenants), certificates from the
# shared ClusterIssuer shared-ca.
space_domain="${TENANCY_SPACE_DOMAIN:-apps.test}"
space_issuer="${TENANCY_SPACE_ISSUER:-shared-ca}"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
RUST_LOG="${RUST_LOG:-info}" "$server_bin" serve --bind-address 127.0.0.1 --secure-port "$port" \
  --tls-cert-file "$serving/tls.crt" --tls-private-key-file "$serving/tls.key" \
  --kubeconfig "$server_kubeconfig" --access-mode "$access_mode" \
  --space-domain "$space_domain" --space-issuer "$space_issuer" >"$LOG_DIR/tenancy-apiserver.log" 2>&1 &
echo $! >"$PID_DIR/tenancy-apiserver.pid"
server_url="https://127.0.0.1:$port"

deadline=$((SECONDS + 60))
until curl -sf --cacert "$serving/ca.crt" "$server_url/readyz" >/dev/null 2>&1; do
  kill -0 "$(cat "$PID_DIR/tenancy-apiserver.pid")" 2>/dev/null || fail "the server exited"
  ((SECONDS < deadline)) || fail "the server did not get ready within 60s"
  sleep 0.2
done
log "server ready on $server_url"

sed -e "s|\${PORT}|$port|g" -e "s|\${CA_BUNDLE}|$(base64 -w0 <"$serving/ca.crt")|g" \
  "$repo/apiservice/local/apiservice.yaml" | k apply -f - >&2
k wait --for=condition=Available apiservice/v1.tenancy.loft.sh --timeout=60s >&2 ||
  fail "APIService v1.tenancy.loft.sh is not Available: $(k get apiservice v1.tenancy.loft.sh -o jsonpath='{.status.conditions}')"
# Available is not yet discoverable: kube-apiserver's aggregated discovery picks the group up a moment later, and until
# then `kubectl get accounts` would resolve to the CRD of the same name.
deadline=$((SECONDS + 60))
until k api-resources --api-group=tenancy.loft.sh -o name 2>/dev/null | grep -q '^accounts.tenancy.loft.sh$'; do
  ((SECONDS < deadline)) || fail "tenancy.loft.sh is not in kube-apiserver's discovery after 60s"
  sleep 0.2
done
# Likewise its OpenAPI: kube-apiserver's OpenAPI aggregation downloads the server's schemas a moment later still, and
# until then `kubectl explain space` cannot find the resource.
deadline=$((SECONDS + 60))
until k explain space.spec >/dev/null 2>&1; do
  ((SECONDS < deadline)) || fail "kube-apiserver's OpenAPI has no schema for spaces after 60s"
  sleep 0.2
done

# cert-manager (tests/certmanager: its controllers out of cluster, with the admin's identity) and the CA ClusterIssuer
# shared-ca, the space domains' shared issuer; with cert-manager's role for namespace admins as its chart installs it.
cert_manager_out="$("$repo/tests/certmanager/build.sh")" || fail "building cert-manager failed"
cert_manager_bin="$(sed -n 's/^cert-manager=//p' <<<"$cert_manager_out")"
cert_manager_crds="$(sed -n 's/^cert-manager-crds=//p' <<<"$cert_manager_out")"
gateway_api_crds="$(sed -n 's/^gateway-api-crds=//p' <<<"$cert_manager_out")"
k apply --server-side --force-conflicts -f "$cert_manager_crds" -f "$gateway_api_crds" >/dev/null
k wait --for=condition=Established crd/clusterissuers.cert-manager.io crd/certificates.cert-manager.io --timeout=30s >&2
ca_dir="$STATE_DIR/shared-ca"
mkdir -p "$ca_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=tenancy e2e shared CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$ca_dir/tls.key" -out "$ca_dir/ca.crt" 2>/dev/null
k create namespace cert-manager --dry-run=client -o yaml | k apply -f - >/dev/null
k create secret tls shared-ca -n cert-manager --cert "$ca_dir/ca.crt" --key "$ca_dir/tls.key" \
  --dry-run=client -o yaml | k apply -f - >/dev/null
k apply -f - >/dev/null <<'MANIFESTS'
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: shared-ca}
spec: {ca: {secretName: shared-ca}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: cert-manager-edit
  labels: {rbac.authorization.k8s.io/aggregate-to-admin: "true", rbac.authorization.k8s.io/aggregate-to-edit: "true"}
rules:
  - apiGroups: [cert-manager.io]
    resources: [certificates, certificaterequests, issuers]
    verbs: [get, list, watch, create, delete, deletecollection, patch, update]
MANIFESTS
"$cert_manager_bin" --kubeconfig "$KUBECONFIG_ADMIN" --cluster-resource-namespace cert-manager \
  >"$LOG_DIR/cert-manager.log" 2>&1 &
echo $! >"$PID_DIR/cert-manager.pid"
log "cert-manager started (ClusterIssuer shared-ca, log $LOG_DIR/cert-manager.log)"

{
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q SERVER_BIN "$server_bin"
  q CERT_MANAGER_CRDS "$cert_manager_crds"
  q GATEWAY_API_CRDS "$gateway_api_crds"
  q CERT_MANAGER_CA "$ca_dir/ca.crt"
  q SERVER_PORT "$port"
  q SERVER_URL "$server_url"
  q SERVER_ACCESS_MODE "$access_mode"
  q SPACE_DOMAIN "$space_domain"
  q SPACE_ISSUER "$space_issuer"
  q SERVER_CA_CERT "$serving/ca.crt"
  q SERVER_KUBECONFIG "$server_kubeconfig"
  q REPO_DIR "$repo"
  q HELM "$helm_bin"
} >>"$env_file"
log "up in $((SECONDS - start))s (source $env_file)"
echo "$env_file"
