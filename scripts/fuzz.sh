#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time, one
# after the other (one process, one thread: the machine is shared).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGET defaults to every target in
# fuzz/Cargo.toml. Works on the stable toolchain: the build uses
# `--sanitizer none`, which needs no nightly flag. FUZZ_SANITIZER=address asks
# for AddressSanitizer instead, built with RUSTC_BOOTSTRAP=1 (nightly flags on
# a stable compiler); the targets are safe Rust, so it mostly costs speed.
#
# The seeds in fuzz/corpus/<target>/ are read, never written: what the fuzzer
# finds goes to fuzz/corpus-gen/<target>/ and crashes to
# fuzz/artifacts/<target>/, both git-ignored. Exits 1 if any target crashed.
# CI does not run this (too slow); see fuzz/README.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
secs="${1:-60}"
shift $(( $# > 0 ? 1 : 0 ))
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

sanitizer="${FUZZ_SANITIZER:-none}"
if [[ "$sanitizer" != none ]]; then
    export RUSTC_BOOTSTRAP=1
fi
# Its own target dir: fuzz builds use other flags and would rebuild the main
# workspace's artefacts.
export CARGO_TARGET_DIR="$fuzz/target"
flags=(--fuzz-dir "$fuzz" --sanitizer "$sanitizer" --debug-assertions)

cd "$root"
if [[ $# -gt 0 ]]; then
    targets=("$@")
    for t in "${targets[@]}"; do
        cargo fuzz build "${flags[@]}" "$t"
    done
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz")
    cargo fuzz build "${flags[@]}"
fi

failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$fuzz/corpus-gen/$t" "$fuzz/artifacts/$t"
    log="$fuzz/artifacts/$t/last-run.log"
    echo "== $t: ${secs}s" >&2
    status=ok
    if ! cargo fuzz run "${flags[@]}" "$t" "$fuzz/corpus-gen/$t" "$fuzz/corpus/$t" -- \
        -max_total_time="$secs" \
        -dict="$fuzz/dicts/http.dict" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=CRASH
        failed+=("$t")
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    summary+=("$(printf '%-15s %6ss %12s execs  %s' "$t" "$secs" "$execs" "$status")")
    if [[ $status != ok ]]; then
        grep -E 'panicked at|Test unit written|SUMMARY' "$log" >&2 || true
    fi
done

printf '%s\n' "target           time        executions  result" "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in last-run.log)" >&2
    exit 1
fi
