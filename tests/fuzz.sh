#!/usr/bin/env bash
# Owns: one bounded fuzzing run of every target in fuzz/ (cargo-fuzz, libFuzzer), as CI runs it.
#
#   tests/fuzz.sh [SECONDS_PER_TARGET]      default 20
#
# Installs cargo-fuzz (and a nightly toolchain) when missing, builds every target, and runs each for the given time
# on a temporary copy of its seed corpus in fuzz/corpus/<target>/, so the committed corpus is never written to.
# Prints each target's executions and a summary line; exits non-zero if any target crashed (a panic or failed
# invariant, a timeout or out-of-memory), printing the path of the input that did it (kept in fuzz/artifacts/, which
# is ignored by git). Reproduce one with:  cd fuzz && cargo +nightly fuzz run -s none <target> <path>
# (and shrink it with `cargo +nightly fuzz tmin -s none <target> <path>`).
#
# Environment: FUZZ_TOOLCHAIN (default nightly), FUZZ_SANITIZER (default none: the crate forbids unsafe code; set
# "address" to run the targets under ASan, slower).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo/fuzz"
start=$SECONDS

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
fi
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
  echo "== installing the $toolchain toolchain" >&2
  rustup toolchain install "$toolchain" --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

# Same dependency versions as the server: the fuzz crate is its own workspace, so seed its (ignored) lock file.
cp "$repo/Cargo.lock" Cargo.lock

echo "== building fuzz targets ($((SECONDS - start))s)" >&2
triple="$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')"
cargo "+$toolchain" fuzz build -s "$sanitizer" --target "$triple"

work="$(mktemp -d "${TMPDIR:-/tmp}/tenancy-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mapfile -t targets < <(cargo "+$toolchain" fuzz list)
total=0
failed=()
for target in "${targets[@]}"; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus"
  if [[ -d "corpus/$target" ]]; then
    cp -R "corpus/$target/." "$corpus/"
  fi
  log="$work/$target.log"
  began=$SECONDS
  rc=0
  # The binary itself rather than `cargo fuzz run`: already built, and no cargo lock to wait on.
  mkdir -p "artifacts/$target"
  "target/$triple/release/$target" -artifact_prefix="$repo/fuzz/artifacts/$target/" \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "$corpus" >"$log" 2>&1 || rc=$?

  runs="$(grep -oE 'Done [0-9]+ runs' "$log" | tail -n 1 | grep -oE '[0-9]+' || true)"
  if [[ -z "$runs" ]]; then
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$' || true)"
  fi
  runs="${runs:-0}"
  total=$((total + runs))

  if [[ $rc -eq 0 ]]; then
    printf '%-16s %12s executions in %3ss  ok\n' "$target" "$runs" "$((SECONDS - began))"
  else
    failed+=("$target")
    input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    printf '%-16s %12s executions in %3ss  FAILED (exit %s)\n' "$target" "$runs" "$((SECONDS - began))" "$rc"
    if [[ -n "$input" ]]; then
      [[ "$input" == /* ]] || input="$repo/fuzz/${input#./}"
      echo "  crash input: $input"
    fi
    # The panic (or libFuzzer's own report) and where it happened.
    { grep -E -A 4 "panicked at|ERROR: libFuzzer|==ERROR|SUMMARY" "$log" || tail -n 30 "$log"; } |
      head -n 30 | sed 's/^/  | /' || true
  fi
done

echo "fuzz: ${#targets[@]} targets x ${seconds}s, $total executions, ${#failed[@]} failed${failed:+ (${failed[*]})}; $((SECONDS - start))s in all"
[[ ${#failed[@]} -eq 0 ]]
