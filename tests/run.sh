#!/usr/bin/env bash
# Owns: one whole test run, as CI runs it. Lints, builds the control plane and helm (cached by version), installs what
# the web console's browser tests need (tests/console/install.sh), checks the Helm chart against deploy/, builds the
# release binary the image ships (deploy/build-binary.sh, the Dockerfile's build), starts one control plane and server
# for the run, runs every test against it (unit, e2e, the console in Chromium, client-go), soaks the release binary,
# and tears it all down.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
start=$SECONDS
step() { echo "== $* ($((SECONDS - start))s)" >&2; }

step "lint"
cargo fmt --all -- --check
cargo clippy --locked --all-targets --all-features --quiet -- -D warnings

step "control plane binaries"
tests/controlplane/build.sh >/dev/null

step "cert-manager for the space-domain tests (tests/certmanager/build.sh)"
tests/certmanager/build.sh >/dev/null

step "console test tools: Debian's Chromium, Node.js, playwright-core (tests/console/install.sh)"
tests/console/install.sh

step "install: helm lint, helm template, the chart's defaults are deploy/'s objects"
tests/install/same-objects.sh

step "build"
cargo test --locked --features fault-injection --no-run --quiet

# The image's build (Dockerfile): the same script, cargo command and static-binary check. The image builds for musl;
# here, without Rust's musl standard library, for this host's target (see the script). The soak below runs it.
step "release build (deploy/build-binary.sh, the image's build)"
deploy/build-binary.sh >/dev/null

state="$(mktemp -d "${TMPDIR:-/tmp}/tenancy-test.XXXXXX")"
cleanup() {
  tests/controlplane/down.sh "$state" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

step "start the control plane and the server"
env_file="$(tests/env/up.sh "$state")"
env_file="$(tail -n 1 <<<"$env_file")"

step "tests"
if ! TENANCY_E2E_ENV="$env_file" cargo test --locked --features fault-injection; then
  echo "== server log (tail)" >&2
  tail -n 60 "$state/logs/tenancy-apiserver.log" >&2 || true
  exit 1
fi

step "web console in a browser (tests/console: Chromium through kubectl proxy, as alice and as admin)"
# Screenshots outlive the run's state directory: beside the build, never committed.
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$repo/$target_dir"
shots="$target_dir/console-screenshots"
cargo build --locked --features fault-injection --quiet --bin kubectl-space
if ! (cd tests/console && TENANCY_E2E_ENV="$env_file" CONSOLE_SCREENSHOTS="$shots" KUBECTL_SPACE="$target_dir/debug/kubectl-space" \
  node --test --test-concurrency=1 --test-timeout=120000 console.test.mjs); then
  echo "== server log (tail)" >&2
  tail -n 60 "$state/logs/tenancy-apiserver.log" >&2 || true
  exit 1
fi
echo "== console screenshots: $shots" >&2

step "client-go tests"
# ./restart restarts kube-apiserver, so it runs alone, after the other packages.
if ! (cd tests/clientgo && export TENANCY_E2E_ENV="$env_file" GOTOOLCHAIN=local &&
  go list ./... | grep -v '/restart$' | xargs go test -count=1 -timeout 10m &&
  go test -count=1 -timeout 10m ./restart); then
  echo "== server log (tail)" >&2
  tail -n 60 "$state/logs/tenancy-apiserver.log" >&2 || true
  exit 1
fi

step "soak (short), on the release binary"
# The binary the image ships, serving through kube-apiserver under load: the tests above need the debug build's
# fault-injection hooks, this needs none. 40 s is too short for the server to settle into its steady state
# (benches/soak.sh runs 15 minutes and holds the 10 MB plateau); here the memory check only catches gross growth.
tests/controlplane/down.sh "$state" >/dev/null 2>&1 || true
env_file="$(TENANCY_PROFILE=release tests/env/up.sh "$state")"
env_file="$(tail -n 1 <<<"$env_file")"
if ! (cd tests/clientgo && TENANCY_E2E_ENV="$env_file" GOTOOLCHAIN=local go run ./cmd/soak -duration 40s -watches 200 \
  -rss-growth-limit-mb 48); then
  echo "== server log (tail)" >&2
  tail -n 60 "$state/logs/tenancy-apiserver.log" >&2 || true
  exit 1
fi
step "e2e again, with visibility by SubjectAccessReview (--access-mode=sar)"
tests/controlplane/down.sh "$state" >/dev/null 2>&1 || true
env_file="$(TENANCY_ACCESS_MODE=sar tests/env/up.sh "$state")"
env_file="$(tail -n 1 <<<"$env_file")"
if ! TENANCY_E2E_ENV="$env_file" cargo test --locked --features fault-injection --test e2e --test shared; then
  echo "== server log (tail)" >&2
  tail -n 60 "$state/logs/tenancy-apiserver.log" >&2 || true
  exit 1
fi
tests/controlplane/down.sh "$state" >/dev/null 2>&1 || true

step "fuzz (bounded)"
tests/fuzz.sh 15
step "done"
