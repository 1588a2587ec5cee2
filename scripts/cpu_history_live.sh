#!/usr/bin/env bash
# Gate v4 live on this CPU runner (docs/gate.md, issue #34): raw jobs of the B8 sweep, K=2 runs
# each, every job its own pytest process against no baseline, in ORDER (a = unchanged, sNN = NN %
# slower). Nothing is judged here: `batchperf gate-quality --history` forms histories from the
# recorded jobs in run order and judges each later job against the jobs before it.
#   bash scripts/cpu_history_live.sh OUT
set -uo pipefail
out=${1:?output dir}; mkdir -p "$out"
order=${ORDER:-"$(printf 'a %.0s' $(seq 20))a s25 a a s10 a a s25 a s10 a a s25 a s10 a"}
{ grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu family' /proc/cpuinfo; grep -m1 '^model\s' /proc/cpuinfo
  nproc; grep -o -w 'avx512[a-z_0-9]*\|avx_vnni\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } > "$out/machine.txt"
i=0
for kind in $order; do
  i=$((i + 1)); name=$(printf 'run-%02d-%s' "$i" "$kind")
  case $kind in
    a) set_args=() ;;
    s*) set_args=(--batchperf-set "slowdown=0.${kind#s}") ;;
  esac
  start=$(date +%s.%N)
  python scripts/pytest_job.py suites/test_batch_sweep.py -p no:cacheprovider -q --batchperf-batch-sizes 8 \
      --batchperf-runs "${RUNS:-2}" "${set_args[@]}" --batchperf-baseline-dir "$out/no-baselines" \
      --batchperf-report "$out/$name" > "$out/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc wall_s=$(awk "BEGIN{print $(date +%s.%N) - $start}") at=$(date -u +%H:%M:%S)" >> "$out/runs.txt"
done
touch "$out/DONE"
