#!/usr/bin/env bash
# Gate v3 live on this CPU runner (docs/results/cpu-gate.md), against the committed baseline
# of this machine's class (saved in 3 jobs: `pytest suites --batchperf-save --batchperf-runs 3`,
# three times). Every job is a fresh pytest process, judged as it ran:
#   committed mode, all suites: A/A jobs and jobs 100 % and 25 % slower, interleaved;
#   A/B mode, the batch sweep at B8: A/A jobs and 25 % jobs;
#   jobs with one compute thread instead of two, and one under `taskset -c 0`.
#   bash scripts/cpu_gate_live.sh OUT [AA] [PER_SLOWDOWN] [AB_EACH] [THREADS1]
set -uo pipefail
out=${1:?output dir}; aa=${2:-7}; per=${3:-3}; ab=${4:-3}; threads1=${5:-2}
mkdir -p "$out"
{ grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu family' /proc/cpuinfo; grep -m1 '^model\s' /proc/cpuinfo
  nproc; grep -o -w 'avx512[a-z_0-9]*\|avx_vnni\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } > "$out/machine.txt"
batchperf gate-quality --baseline-dir baselines --aa "$aa" --slowdowns 1.0,0.25 \
    --per-slowdown "$per" --out "$out/committed" | tee "$out/committed.txt"
batchperf gate-quality --ab --suite suites/test_batch_sweep.py --aa "$ab" --slowdowns 0.25 \
    --per-slowdown "$ab" --out "$out/ab" -- --batchperf-batch-sizes 8 | tee "$out/ab.txt"
one() {  # name, then the command's prefix and pytest arguments
    local name=$1; shift
    local start; start=$(date +%s)
    "$@" suites -p no:cacheprovider -q --batchperf-report "$out/$name" > "$out/$name.log" 2>&1
    echo "$name: exit $? in $(( $(date +%s) - start )) s" | tee -a "$out/jobs.txt"
}
# pytest_job.py: an interrupt (kill -INT) still writes the results so far in the background
for i in $(seq "$threads1"); do one "threads1-$i" python scripts/pytest_job.py --batchperf-set n_threads=1; done
one taskset taskset -c 0 python scripts/pytest_job.py
touch "$out/DONE"
