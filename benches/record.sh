#!/usr/bin/env bash
# Runs every criterion benchmark of the workspace into a fresh criterion directory, then appends
# one entry (all samples, machine fingerprint, layout quality) to the benchmark history.
#
#   benches/record.sh [HISTORY] [-- options of `forcefield bench record`, e.g. --label clean]
#
# FORCEFIELD_FAULTS (comma-separated planted faults) reaches the benchmarks and the record alike.
# BENCH_ARGS is passed to every benchmark executable (e.g. BENCH_ARGS="--sample-size 20").
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
for exe in "${exes[@]}"; do
    echo "== $(basename "$exe")" >&2
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of words on purpose.
    CRITERION_HOME="$criterion_home" "$exe" --bench ${BENCH_ARGS:-} >&2
    exe_args+=(--exe "$exe")
done
target/release/forcefield bench record --history "$history" --criterion-dir "$criterion_home" \
    "${exe_args[@]}" "$@"
