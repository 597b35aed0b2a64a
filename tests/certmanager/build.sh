#!/usr/bin/env bash
# Builds the e2e tests' cert-manager controller (main.go beside this script, on the cert-manager version pinned in
# go.mod) from the Go module proxy into a cache outside the repo, in a directory keyed by that version, as
# cert-manager-HASH, HASH being of main.go, go.mod and go.sum so that checkouts with different versions of them share
# the cache; and writes that version's CRDs (deploy/crds/ of the same module, plain YAML) to crds.yaml beside it.
# Also writes Gateway API's standard CRDs (sigs.k8s.io/gateway-api, version below) there. Rebuilds only what is missing.
# Progress on stderr; on stdout "cert-manager=PATH", "cert-manager-crds=PATH" and "gateway-api-crds=PATH".
#
# Extra go flags come through GOFLAGS, e.g. GOFLAGS=-p=1 on a busy machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cm_module=github.com/cert-manager/cert-manager
version="$(awk -v m="$cm_module" '$1 == m { print $2 }' "$here/go.mod")"
[[ -n "$version" ]] || {
  echo "certmanager: $here/go.mod does not require $cm_module" >&2
  exit 1
}
cache_root="${TENANCY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-apiserver}"
out_dir="$cache_root/cert-manager-$version"
mkdir -p "$out_dir"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false ${GOFLAGS:-}"
hash="$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c 1-16)"
bin="$out_dir/cert-manager-$hash"
if [[ -x "$bin" ]]; then
  echo "certmanager: cert-manager-$hash cached" >&2
else
  echo "certmanager: building cert-manager $version (a cold build takes minutes) ..." >&2
  start=$SECONDS
  # AppVersion is what cert-manager puts in its User-Agent; its own release builds set it the same way.
  (cd "$here" && go build -trimpath -ldflags "-s -w -X $cm_module/pkg/util.AppVersion=$version" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
  echo "certmanager: built cert-manager-$hash in $((SECONDS - start))s" >&2
fi

crds="$out_dir/crds.yaml"
if [[ -s "$crds" ]]; then
  echo "certmanager: crds.yaml cached" >&2
else
  # deploy/crds/ holds what the Helm chart's crd-*.yaml templates wrap in {{ if }} and labels: the same specs, plain.
  module_dir="$(cd "$here" && go mod download -json "$cm_module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  files=("$module_dir"/deploy/crds/*.yaml)
  [[ -e "${files[0]}" ]] || {
    echo "certmanager: no CRDs in $module_dir/deploy/crds" >&2
    exit 1
  }
  for f in "${files[@]}"; do
    # Each file starts with its own document separator; add one anyway so the result never depends on that.
    [[ "$(head -n 1 "$f")" == "---" ]] || echo "---"
    cat "$f"
  done >"$crds.tmp"
  mv "$crds.tmp" "$crds"
  echo "certmanager: wrote ${#files[@]} CRDs of cert-manager $version to $crds" >&2
fi

# Gateway API's standard-channel CRDs (Gateway and the routes whose hostnames space domains guard), from its module at
# the version below, beside cert-manager's: the other kind of object that claims hostnames.
gateway_api_version=v1.6.3
gateway_crds="$out_dir/gateway-api-$gateway_api_version-crds.yaml"
if [[ -s "$gateway_crds" ]]; then
  echo "certmanager: Gateway API CRDs cached" >&2
else
  gateway_dir="$(cd "$here" && go mod download -json "sigs.k8s.io/gateway-api@$gateway_api_version" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  for kind in gatewayclasses gateways httproutes grpcroutes tlsroutes referencegrants; do
    echo "---"
    cat "$gateway_dir/config/crd/standard/gateway.networking.k8s.io_$kind.yaml"
  done >"$gateway_crds.tmp"
  mv "$gateway_crds.tmp" "$gateway_crds"
  echo "certmanager: wrote Gateway API $gateway_api_version CRDs to $gateway_crds" >&2
fi

echo "cert-manager=$bin"
echo "cert-manager-crds=$crds"
echo "gateway-api-crds=$gateway_crds"
