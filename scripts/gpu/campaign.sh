#!/usr/bin/env bash
# On the GPU machine, after setup.sh: record raw runs for gate quality on vllm-synthetic-8b.
# Every run is a fresh pytest process (one engine process) measuring the same four sweep
# cases once; nothing is judged here. `batchperf gate-quality --campaign` forms A/A, A/B and
# committed-baseline jobs from the runs afterwards, offline.
#   setsid bash scripts/gpu/campaign.sh > /tmp/out/job.log 2>&1 &
# Run kinds, interleaved so that drift of the machine hits them alike:
#   a = the profile as it is, e = enforce_eager=true (CUDA graphs and torch.compile off),
#   g10 / g5 = a GPU-side spin of 10 % / 5 % of each engine step.
# CASES (a -k expression) and ROUNDS override the four cases at 3 rounds.
set -uo pipefail
source "$(dirname "$0")/env.sh"
snapshot
out=/tmp/out; mkdir -p "$out"
profile=vllm-synthetic-8b
cases=${CASES:-"B8-continuous or B32-continuous or B128-continuous or B32-static"}
order=${ORDER:-"a a g10 g5 e a g10 g5 a e g10 g5 a a g10 g5 a g10 g5 a"}
# CUDA graphs for the sweep's sizes (and the powers of two between) instead of vLLM's ~67.
capture='compilation_config={cudagraph_capture_sizes=[1,2,4,8,16,32,64,128]}'
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  python3 -c "import vllm, torch, platform; print('vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda, 'python', platform.python_version())"
  grep -m1 'model name' /proc/cpuinfo; nproc
} > "$out/machine.txt" 2>&1
wait_for_model
i=0
for kind in $order; do
  i=$((i + 1)); name=$(printf 'run-%02d-%s' "$i" "$kind")
  case $kind in
    a) set_args=() ;;
    e) set_args=(--batchperf-set enforce_eager=true) ;;
    g10) set_args=(--batchperf-set slowdown=0.10 --batchperf-set slowdown_on=gpu) ;;
    g5) set_args=(--batchperf-set slowdown=0.05 --batchperf-set slowdown_on=gpu) ;;
  esac
  nvidia-smi --query-compute-apps=pid --format=csv,noheader | xargs -r kill -9; sleep 1
  start=$(date +%s.%N)
  python3 scripts/pytest_job.py suites/test_batch_sweep.py -p no:cacheprovider -q -k "$cases" \
      --batchperf-profile "$profile" --batchperf-rounds "${ROUNDS:-3}" --batchperf-set "$capture" "${set_args[@]}" \
      --batchperf-baseline-dir /tmp/no-baselines --batchperf-report "$out/$name" \
      > "$out/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc wall_s=$(awk "BEGIN{print $(date +%s.%N) - $start}")" >> "$out/runs.txt"
done
touch "$out/DONE"
