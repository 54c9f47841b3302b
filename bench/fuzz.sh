#!/usr/bin/env bash
# Fuzz ONYX's parsers of untrusted input (fuzz/fuzz_targets): each target runs for
# FUZZ_SECONDS (default 60) under the limits every finding is judged by — inputs up to
# 4 KiB, 2 GiB of memory, 5 s per input — with debug assertions (overflow checks) on.
#
#   bench/fuzz.sh                         # every target, 60 s each
#   FUZZ_SECONDS=300 bench/fuzz.sh manifest
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); builds with one job
# unless CARGO_BUILD_JOBS says otherwise. The corpus grows in fuzz/corpus/TARGET (seeded from
# fuzz/seeds/TARGET, mutated with fuzz/dicts/TARGET.dict); an input that crashes, times out
# or runs out of memory is written to fuzz/artifacts/TARGET/ — minimise it with
#   cargo +nightly fuzz tmin -a TARGET fuzz/artifacts/TARGET/crash-…
# One summary line per target; the exit status is non-zero when any target failed.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(manifest expression label_selector)
LIMITS=(-max_len=4096 -rss_limit_mb=2048 -timeout=5 -print_final_stats=1)
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
FUZZ=(cargo +nightly fuzz)

mkdir -p fuzz/artifacts
for t in "${TARGETS[@]}"; do
    if ! "${FUZZ[@]}" build --debug-assertions "$t" >fuzz/artifacts/build.log 2>&1; then
        echo "$t: BUILD FAILED (fuzz/artifacts/build.log)"; tail -20 fuzz/artifacts/build.log; exit 2
    fi
done

failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/seeds/$t"
    log="fuzz/artifacts/$t/last-run.log"
    dict=()
    [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
    "${FUZZ[@]}" run --debug-assertions "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        "${LIMITS[@]}" "${dict[@]}" -max_total_time="$SECONDS_EACH" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "$t: ok — ${execs:-?} execs in ${SECONDS_EACH} s (${rate:-?}/s), cov ${cov:-?}, corpus $corpus"
    else
        failed=1
        what=$(grep -o -m1 -E 'deadly signal|panicked at [^ ]*|timeout after [0-9]+ seconds|out-of-memory \([^)]*\)|ERROR: AddressSanitizer: [a-z-]*|ERROR: libFuzzer: [a-z-]*' "$log" | head -1)
        art=$(grep -o -m1 "Test unit written to [^ ]*" "$log" | sed 's/Test unit written to //')
        echo "$t: FAILED (rc $rc) — ${what:-see $log} — input ${art:-none} — after ${execs:-?} execs; log $log"
    fi
done
exit $failed
