#!/usr/bin/env bash
# Per-kernel counts of the CUDA backend that do not move run to run, recorded with the same
# fingerprint rules as every other entry: Nsight Compute's command line counts each kernel's warp
# instructions executed (smsp__inst_executed.sum) and DRAM bytes (dram__bytes.sum) over a fixed
# workload (`forcefield layout --backend cuda` on a fixed graph and seed, a fixed number of steps),
# `forcefield bench count --ncu-csv` sums them per kernel into ids `gpu_kernels/<graph>/<kernel>`,
# and `forcefield bench record --counts` appends the entry (fingerprint with GPU, driver and CUDA).
#
#   benches/gpu_counts.sh HISTORY [LABEL]
#
# Needs: an NVIDIA GPU whose performance counters ncu may read (root, or
# NVreg_RestrictProfilingToAdminUsers=0), `ncu` on PATH (or NCU=/path/to/ncu), and the forcefield
# binary (FORCEFIELD=path; default target/release/forcefield). No cargo: it runs where only the
# binary was copied. FORCEFIELD_FAULTS (e.g. slow-force-pass-3pct) is passed to `layout` as --fault.
# GRAPH (default corpora/graphs/power.edges) and STEPS (default 10) choose the workload.
#
# An A/A pair and a planted slowdown, then the comparison:
#   benches/gpu_counts.sh gpu-history.jsonl clean
#   benches/gpu_counts.sh gpu-history.jsonl clean
#   FORCEFIELD_FAULTS=slow-force-pass-3pct benches/gpu_counts.sh gpu-history.jsonl slow3
#   forcefield bench compare --history gpu-history.jsonl --baseline clean --current slow3
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: benches/gpu_counts.sh HISTORY [LABEL]" >&2
    exit 2
fi
history="$1"
label="${2:-}"
forcefield="${FORCEFIELD:-target/release/forcefield}"
ncu="${NCU:-ncu}"
if ! command -v "$ncu" >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/ncu ]; then
    ncu=/usr/local/cuda/bin/ncu
fi
graph="${GRAPH:-corpora/graphs/power.edges}"
steps="${STEPS:-10}"
if ! command -v "$ncu" >/dev/null 2>&1; then
    echo "error: ncu (Nsight Compute command line) not found; set NCU=/path/to/ncu" >&2
    exit 3
fi
if [ ! -x "$forcefield" ]; then
    echo "error: $forcefield is not an executable; set FORCEFIELD=/path/to/forcefield" >&2
    exit 2
fi
# `layout` takes planted faults as flags; FORCEFIELD_FAULTS (a,b) names them here.
fault_flags=()
IFS=',' read -r -a planted <<<"${FORCEFIELD_FAULTS:-}"
for f in "${planted[@]}"; do
    if [ -n "$f" ]; then fault_flags+=(--fault "$f"); fi
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
graph_name="$(basename "${graph%.*}")"

# Every launch of the step's kernels, in base units so that the parser need not scale.
"$ncu" --csv --print-units base --metrics smsp__inst_executed.sum,dram__bytes.sum \
    "$forcefield" layout "$graph" --backend cuda --steps "$steps" --seed 1 "${fault_flags[@]}" \
    --out "$work/positions.json" >"$work/ncu.csv" 2>"$work/ncu.err" || {
    echo "error: ncu failed (exit $?):" >&2
    tail -5 "$work/ncu.err" >&2
    grep -m3 "==ERROR==\|ERR_NVGPUCTRPERM" "$work/ncu.csv" >&2 || true
    exit 3
}
if grep -q "ERR_NVGPUCTRPERM" "$work/ncu.csv" "$work/ncu.err"; then
    echo "error: ncu may not read the GPU's performance counters here (ERR_NVGPUCTRPERM): run as root or allow profiling; or use the gpu_step bench's CUDA-event times" >&2
    exit 3
fi

"$forcefield" bench count --ncu-csv "$work/ncu.csv" --prefix "gpu_kernels/$graph_name" \
    --tool "ncu $("$ncu" --version | tail -n 1)" --out "$work/counts.json"
record_args=(--history "$history" --criterion-dir "$work/no-criterion" --counts "$work/counts.json" --no-quality)
if [ -n "$label" ]; then
    record_args+=(--label "$label")
fi
"$forcefield" bench record "${record_args[@]}"
