#!/usr/bin/env bash
# Gate v3 live on this CPU runner (docs/results/cpu-gate.md): a baseline saved in 3 jobs,
# then A/A jobs and slowed jobs interleaved, each a fresh pytest process, all judged as they
# ran; then jobs with one compute thread and one under `taskset -c 0`.
#   bash scripts/cpu_gate_live.sh OUT [AA] [PER_SLOWDOWN]
set -uo pipefail
out=${1:?output dir}; aa=${2:-4}; per=${3:-2}
mkdir -p "$out"
{ grep -m1 'model name' /proc/cpuinfo; nproc; grep -o -w 'avx512[a-z_0-9]*\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } > "$out/machine.txt"
suites=(suites/test_batch_sweep.py suites/test_variable_length.py)  # 21 cases
batchperf gate-quality --suite "${suites[0]}" --suite "${suites[1]}" --save-jobs 3 --save-runs 3 \
    --aa "$aa" --slowdowns 1.0,0.25 --per-slowdown "$per" --out "$out" | tee "$out/gate-quality.txt"
one() {  # name, then the command's prefix and pytest arguments
    local name=$1; shift
    local start; start=$(date +%s)
    "$@" "${suites[@]}" -p no:cacheprovider -q --batchperf-baseline-dir "$out/baselines" \
        --batchperf-report "$out/$name" > "$out/$name.log" 2>&1
    echo "$name: exit $? in $(( $(date +%s) - start )) s" | tee -a "$out/jobs.txt"
}
one threads1-1 pytest --batchperf-set n_threads=1
one threads1-2 pytest --batchperf-set n_threads=1
one taskset taskset -c 0 pytest
touch "$out/DONE"
