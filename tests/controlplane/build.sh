#!/usr/bin/env bash
# Builds the local control plane's binaries (etcd, kube-apiserver, kube-controller-manager, kubectl) from the Go
# module proxy at the versions pinned in tests/controlplane/{k8s,etcd}/go.mod, into a cache outside the repo keyed by
# version, and the authorization webhook (tests/controlplane/authz-webhook) into the same directory as
# authz-webhook-HASH, keyed by a hash of its source so checkouts with different versions of it can share the cache.
# Rebuilds only what is missing. Prints the webhook's path as "authz-webhook=PATH", then the directory holding the
# binaries on its last line.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${TENANCY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-apiserver}"
bin_dir="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$bin_dir"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"

build() { # build <module dir> <package> <binary name>
  local dir="$1" pkg="$2" name="$3"
  if [[ -x "$bin_dir/$name" ]]; then
    echo "controlplane: $name cached" >&2
    return
  fi
  echo "controlplane: building $name (a cold build takes minutes) ..." >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$name.tmp" "$pkg")
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
  echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

build etcd go.etcd.io/etcd/server/v3 etcd
build k8s k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build k8s k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
build k8s k8s.io/kubernetes/cmd/kubectl kubectl
webhook_hash="$(cat "$here/authz-webhook/main.go" "$here/authz-webhook/go.mod" | sha256sum | cut -c 1-16)"
build authz-webhook . "authz-webhook-$webhook_hash"
echo "authz-webhook=$bin_dir/authz-webhook-$webhook_hash"
echo "$bin_dir"
