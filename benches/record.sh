#!/usr/bin/env bash
# Runs every criterion benchmark of the workspace into a fresh criterion directory, counts the work
# of the CPU benchmarks under Callgrind (the `*_counts` executables, when valgrind is installed),
# then appends one entry (all samples, counts, machine fingerprint, layout quality) to the
# benchmark history.
#
#   benches/record.sh [HISTORY] [-- options of `forcefield bench record`, e.g. --label clean]
#
# FORCEFIELD_FAULTS (comma-separated planted faults) reaches the benchmarks and the record alike.
# BENCH_ARGS is passed to every criterion executable (e.g. BENCH_ARGS="--sample-size 20", or a
# filter such as BENCH_ARGS="cpu_step/1k").
# COUNT_ARGS is passed to every counting executable (e.g. COUNT_ARGS="--sizes 1k").
# BENCH_COUNTS=0 skips the counts; BENCH_TIMES=0 skips the criterion benchmarks.
# Then: target/release/forcefield bench compare --history HISTORY
set -euo pipefail
cd "$(dirname "$0")/.."
history="${1:-bench-history.jsonl}"
if [ $# -gt 0 ]; then shift; fi
if [ "${1:-}" = "--" ]; then shift; fi

# The bench executables cargo builds (bench targets only), one path per line.
mapfile -t exes < <(cargo bench --workspace --no-run --message-format=json 2>/dev/null |
    grep '"kind":\["bench"\]' | grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//')
if [ "${#exes[@]}" -eq 0 ]; then
    echo "error: cargo built no benchmark executable" >&2
    exit 3
fi

criterion_home="$(mktemp -d)"
trap 'rm -rf "$criterion_home"' EXIT
exe_args=()
count_exes=()
for exe in "${exes[@]}"; do
    case "$(basename "$exe")" in
        # Counting executables are not criterion benchmarks: they run under Callgrind below.
        *_counts-*) count_exes+=(--exe "$exe"); continue ;;
    esac
    if [ "${BENCH_TIMES:-1}" = 0 ]; then continue; fi
    echo "== $(basename "$exe")" >&2
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of words on purpose.
    CRITERION_HOME="$criterion_home" "$exe" --bench ${BENCH_ARGS:-} >&2
    exe_args+=(--exe "$exe")
done

counts_args=()
if [ "${BENCH_COUNTS:-1}" != 0 ] && [ "${#count_exes[@]}" -gt 0 ]; then
    if command -v valgrind >/dev/null 2>&1; then
        echo "== counts under callgrind" >&2
        target/release/forcefield bench count "${count_exes[@]}" --exe-args "${COUNT_ARGS:-}" \
            --out "$criterion_home/counts.json" >&2
        counts_args=(--counts "$criterion_home/counts.json")
    else
        echo "warning: valgrind is not installed: recording times only, no counts" >&2
    fi
fi
target/release/forcefield bench record --history "$history" --criterion-dir "$criterion_home" \
    "${exe_args[@]}" "${counts_args[@]}" "$@"
