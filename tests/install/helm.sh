#!/usr/bin/env bash
# Builds helm from the Go module proxy at the version pinned here, into the same cache outside the repo as the control
# plane's binaries (tests/controlplane/build.sh), keyed by version. Rebuilds only when missing. Prints the path of the
# helm binary on its last line.
set -euo pipefail

HELM_VERSION=v3.19.0
cache_root="${TENANCY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-apiserver}"
bin_dir="$cache_root/helm-$HELM_VERSION"
helm="$bin_dir/helm"

if [[ -x "$helm" ]]; then
  echo "helm: $HELM_VERSION cached" >&2
else
  echo "helm: building $HELM_VERSION (a cold build takes minutes) ..." >&2
  start=$SECONDS
  mkdir -p "$bin_dir"
  tmp="$(mktemp -d "$bin_dir/build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # `go install pkg@version` builds with the module's own go.mod and go.sum (checked against the checksum database).
  # helm's version string is set the way its Makefile does; without it `helm version` reports v3.x-unreleased.
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$tmp" \
    go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$tmp/helm" "$helm"
  echo "helm: built $HELM_VERSION in $((SECONDS - start))s" >&2
fi
echo "$helm"
