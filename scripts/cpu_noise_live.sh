#!/usr/bin/env bash
# Noise at its source, live on this CPU runner (docs/results/cpu-noise.md), at the default
# compute threads (the usable cores less one). Every job is a fresh pytest process:
#   save: the committed baseline of this class, all suites, SAVES jobs of one run per case;
#   committed: the B8 sweep's gate quality against its own 3-job baseline (K=2 each):
#     A/A jobs and 25 % slower jobs, interleaved;
#   noise: the B8 sweep's spread between 6 engine processes at n_threads=2 and at the default;
#   ab: A/B A/A jobs and 10 % slower jobs, then 5 % slower jobs.
#   bash scripts/cpu_noise_live.sh OUT [STAGES]   (STAGES: "save committed noise ab")
set -uo pipefail
out=${1:?output dir}; stages=${2:-"save committed noise ab"}; saves=${SAVES:-3}
mkdir -p "$out"
{ grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu family' /proc/cpuinfo; grep -m1 '^model\s' /proc/cpuinfo
  nproc; grep -o -w 'avx512[a-z_0-9]*\|avx_vnni\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } > "$out/machine.txt"
stamp() { date -u +"%s %H:%M:%S $1" >> "$out/stages.txt"; }
sweep=(suites/test_batch_sweep.py --batchperf-batch-sizes 8)
for stage in $stages; do
  stamp "$stage"
  case $stage in
    save)
      for i in $(seq "$saves"); do
        python scripts/pytest_job.py suites -p no:cacheprovider -q --batchperf-save --batchperf-runs 1 \
            --batchperf-baseline-dir "$out/baselines" --batchperf-report "$out/save-$i" > "$out/save-$i.log" 2>&1
        echo "save $i: exit $?" >> "$out/stages.txt"
      done ;;
    committed)
      batchperf gate-quality --suite suites/test_batch_sweep.py --save-jobs 3 --save-runs 2 --aa 10 \
          --slowdowns 0.25 --per-slowdown 3 --out "$out/committed" -- --batchperf-batch-sizes 8 \
          > "$out/committed.txt" 2>&1 ;;
    noise)
      batchperf noise --measure 6 --out "$out/noise-t2" -- "${sweep[@]}" --batchperf-set n_threads=2 \
          > "$out/noise-t2.txt" 2>&1
      batchperf noise --measure 6 --out "$out/noise-default" -- "${sweep[@]}" > "$out/noise-default.txt" 2>&1 ;;
    ab)
      batchperf gate-quality --ab --suite suites/test_batch_sweep.py --aa 10 --slowdowns 0.10 \
          --per-slowdown 3 --out "$out/ab" -- --batchperf-batch-sizes 8 > "$out/ab.txt" 2>&1
      batchperf gate-quality --ab --suite suites/test_batch_sweep.py --aa 0 --slowdowns 0.05 \
          --per-slowdown "${PER5:-3}" --out "$out/ab5" -- --batchperf-batch-sizes 8 > "$out/ab5.txt" 2>&1 ;;
  esac
done
stamp done
touch "$out/DONE"
