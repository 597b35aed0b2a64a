#!/bin/sh
# Owns: the release build of the server, the one binary that ships. The image (Dockerfile) runs this script and CI
# (tests/run.sh) runs it too, so the build CI checks is the image's: the same cargo command, the same flags, the same
# check that the result is a static binary (the image has no libc to load a dynamic one).
#
# Usage: deploy/build-binary.sh [TARGET]   -> builds tenancy-apiserver for TARGET (default: the host's), prints its
#                                             path on stdout's last line; fails if it is not statically linked.
# The image builds on Alpine for <arch>-unknown-linux-musl. CI runs on a glibc host without Rust's musl standard
# library (rustup cannot fetch one there), so it builds the host's -linux-gnu target with the same command; crt-static
# is set for every target: musl's default already, glibc's static libc for gnu, so both end as static binaries and
# the check below means the same on both. POSIX sh: the Alpine build stage has no bash.
set -eu
repo="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:-$(rustc -vV | sed -n 's/^host: //p')}"

# --target even for the host: rustflags then apply to the binary only, not to build scripts and proc macros (which a
# static libc would break).
(cd "$repo" && cargo build --release --locked --bin tenancy-apiserver --target "$target" \
  --config "target.$target.rustflags = [\"-C\", \"target-feature=+crt-static\"]")

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
bin="$target_dir/$target/release/tenancy-apiserver"

# A dynamic binary names an interpreter (ld.so) or needed libraries; a static(-pie) one neither.
if readelf -l "$bin" | grep -q 'program interpreter' || readelf -d "$bin" | grep -q '(NEEDED)'; then
  echo "build-binary: $bin is not statically linked:" >&2
  readelf -d "$bin" | grep '(NEEDED)' >&2 || true
  exit 1
fi
"$bin" --version >&2
echo "$bin"
