#!/usr/bin/env bash
# Builds the libFuzzer targets (Tests/Fuzz/CutoverFuzz) and runs each for a bounded time over its
# seed corpus (Tests/Fuzz/corpus/TARGET). Not part of `swift test`: a fuzzer build takes minutes.
#
# Usage: Tests/Fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60; TARGET one of request-head response-head chunked-body config runbook
#   FUZZ_KEEP=1         keep the grown corpus in Tests/Fuzz/corpus (default: a scratch copy)
# Prints, per target, the executions and seconds libFuzzer reports; exits 1 on the first crash,
# leaving the input in Tests/Fuzz/crashes/ (replay it with the plain build:
#   swift build --product CutoverFuzz && CUTOVER_FUZZ_TARGET=T .build/debug/CutoverFuzz FILE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(request-head response-head chunked-body config runbook)

# One --sanitize flag with both sanitizers: two separate flags lose coverage (TOOLCHAIN.md).
swift build --product CutoverFuzz -c release --build-path .build/fuzz \
    --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xswiftc -DLIBFUZZER >&2
binary=.build/fuzz/release/CutoverFuzz
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p Tests/Fuzz/crashes

export SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0
for target in "${targets[@]}"; do
    corpus="Tests/Fuzz/corpus/$target"
    [[ -d "$corpus" ]] || { echo "no corpus for $target" >&2; exit 2; }
    work="$corpus"
    if [[ "${FUZZ_KEEP:-0}" != 1 ]]; then
        work="$scratch/$target"
        mkdir -p "$work"
        cp "$corpus"/* "$work"/
    fi
    log="$scratch/$target.log"
    status=0
    CUTOVER_FUZZ_TARGET="$target" "$binary" "$work" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="Tests/Fuzz/crashes/$target-" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs="$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")"
    took="$(awk '/^stat::average_exec_per_sec/ {print $2}' "$log")"
    cover="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)"
    echo "$target: ${runs:-?} executions in ${seconds} s (${took:-?}/s), ${cover:-coverage ?}, corpus $(ls "$work" | wc -l) inputs"
    if ((status != 0)); then
        grep -E 'ERROR|Precondition|Fatal error|SUMMARY' "$log" | head -5 >&2
        echo "$target: crashed; input in Tests/Fuzz/crashes/" >&2
        exit 1
    fi
done
