#!/usr/bin/env bash
# Owns: the check that the Helm chart (charts/tenancy-apiserver) with its defaults renders the same objects as
# `kubectl kustomize deploy/`, the one source of truth for what an install is. Also `helm lint` for every certificate
# mode. That both run the image tagged with the server's version (Cargo.toml). Both renderings go through kustomize, which sorts objects (by kind, then name) and keys and drops comments, and
# must then be identical: no object more or less, no field different, no label the chart adds.
#
# Usage: same-objects.sh   -> builds helm (tests/install/helm.sh) and finds kubectl (tests/controlplane/build.sh),
#                             both cached outside the repo; exits non-zero with a diff on any difference.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
chart="$repo/charts/tenancy-apiserver"
helm="$("$repo/tests/install/helm.sh" | tail -n 1)"
kubectl="$(tail -n 1 < <("$repo/tests/controlplane/build.sh" 2>/dev/null))/kubectl"
[[ -x "$kubectl" ]] || { echo "same-objects: no kubectl at $kubectl" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/tenancy-same-objects.XXXXXX")"
trap 'rm -rf "$work"' EXIT

for mode in existingSecret certManager selfSigned; do
  "$helm" lint --quiet --strict "$chart" --namespace tenancy-system --set "certificates.mode=$mode" >&2
done

# The chart's defaults, with the namespace deploy/ uses; CRDs included, as deploy/ has them.
mkdir "$work/chart"
"$helm" template tenancy-apiserver "$chart" --namespace tenancy-system --include-crds >"$work/chart/rendered.yaml"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [rendered.yaml]\n' \
  >"$work/chart/kustomization.yaml"
"$kubectl" kustomize "$work/chart" >"$work/chart.yaml"
"$kubectl" kustomize "$repo/deploy" >"$work/deploy.yaml"

if ! diff -u --label 'kubectl kustomize deploy/' --label 'helm template charts/tenancy-apiserver (defaults)' \
  "$work/deploy.yaml" "$work/chart.yaml"; then
  echo "same-objects: the chart's defaults and deploy/ render different objects (diff above); change both" >&2
  exit 1
fi
# Both name the image by the server's version (deploy/kustomization.yaml's images: tag, the chart's appVersion).
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)"
if ! grep -qxE " +(- )?image: tenancy-apiserver:$version" "$work/deploy.yaml"; then
  echo "same-objects: deploy/ does not run image tenancy-apiserver:$version (Cargo.toml's version):" >&2
  grep -n 'image:' "$work/deploy.yaml" >&2
  exit 1
fi
echo "same-objects: the chart's defaults render the $(grep -c '^kind: ' "$work/deploy.yaml") objects of deploy/" >&2
