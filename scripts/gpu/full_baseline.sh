#!/usr/bin/env bash
# On the GPU machine, after setup.sh (model.sh may still be writing): every suite saved as a
# baseline for vllm-synthetic-8b, then one A/A rerun against it, each stage's output under
# /tmp/out as it finishes (poll.sh packs it).  RUNS=3 ROUNDS=3 by default.
#   setsid bash scripts/gpu/full_baseline.sh > /tmp/out/job.log 2>&1 &
# STAGES=aa runs only the rerun, against the committed baselines/ (one session cannot hold both).
set -uo pipefail
source "$(dirname "$0")/env.sh"
snapshot
out=/tmp/out; mkdir -p "$out"
profile=${PROFILE:-vllm-synthetic-8b}
stages=${STAGES:-save aa}
common=(-p no:cacheprovider --batchperf-profile "$profile" --batchperf-rounds "${ROUNDS:-3}")
[[ $stages == *save* ]] && common+=(--batchperf-baseline-dir "$out/baselines")
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  python3 -c "import vllm, torch, platform; print('vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda, 'python', platform.python_version())"
  grep -m1 'model name' /proc/cpuinfo; nproc
} > "$out/machine.txt" 2>&1
wait_for_model
if [[ $stages == *save* ]]; then
  stamp save
  python3 scripts/pytest_job.py suites "${common[@]}" --batchperf-save --batchperf-runs "${RUNS:-3}" \
      --batchperf-report "$out/save" > "$out/save.log" 2>&1
  echo "save rc=$?" >> "$out/stages.txt"
  clear_gpu
fi
stamp aa
python3 scripts/pytest_job.py suites "${common[@]}" --batchperf-report "$out/aa" > "$out/aa.log" 2>&1
echo "aa rc=$?" >> "$out/stages.txt"
stamp done
touch "$out/DONE"
