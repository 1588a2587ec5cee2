#!/usr/bin/env bash
# On the GPU machine, after setup.sh (model.sh may still be writing): the vllm-synthetic-8b
# evidence of gate v2, stage by stage, each stage's output under /tmp/out as it finishes.
#   setsid bash scripts/gpu/h200.sh > /tmp/out/job.log 2>&1 &
# 1. the suites saved as a baseline, 3 runs per case (3 fresh engine processes, in passes);
# 2. gate quality on two sweep cases against it: A/A and GPU-side 5 % and 10 % slowdowns,
#    every repetition a fresh pytest process;
# 3. A/B: enforce_eager=true against the compiled engine, 2 pairs.
set -uo pipefail
source "$(dirname "$0")/env.sh"
snapshot
out=/tmp/out; mkdir -p "$out"
profile=vllm-synthetic-8b
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv > "$out/gpu.csv"
# Engines of an earlier stage that was stopped from outside may still hold GPU memory, and
# every later engine start would fail: our own leftovers go before each stage (clear_gpu).
# 0. the vLLM adapter on the tiny model first (while the 8b model is still being written);
#    the slowdown tests start two engines each, so they run last, in a stage of their own
stamp gpu-tests
python3 -m pytest tests/engines/test_vllm_engine.py -m gpu -k "not slowdown" -p no:cacheprovider \
    -q -x > "$out/gpu-tests.log" 2>&1
wait_for_model
clear_gpu; stamp save
python3 scripts/pytest_job.py suites -p no:cacheprovider --batchperf-profile "$profile" \
    --batchperf-save --batchperf-runs 3 --batchperf-rounds 3 --batchperf-baseline-dir "$out/baselines" \
    --batchperf-report "$out/save" > "$out/save.log" 2>&1
touch "$out/save.DONE"
clear_gpu; stamp gate-quality
python3 -m pytest_batchperf.cli gate-quality --profile "$profile" --suite suites/test_batch_sweep.py \
    --baseline-dir "$out/baselines" --aa "${AA:-6}" --per-slowdown "${PER:-3}" --slowdowns 0.05,0.10 \
    --out "$out/gq" -- -k "B32-continuous or B128-continuous" \
    --batchperf-rounds 3 --batchperf-set slowdown_on=gpu > "$out/gq.log" 2>&1
touch "$out/gq.DONE"
clear_gpu; stamp ab
python3 scripts/pytest_job.py suites/test_batch_sweep.py -p no:cacheprovider \
    --batchperf-profile "$profile" -k "B32-continuous" --batchperf-rounds 3 --batchperf-pairs 2 \
    --batchperf-set enforce_eager=true --batchperf-reference enforce_eager=false \
    --batchperf-report "$out/ab" > "$out/ab.log" 2>&1
stamp done
touch "$out/DONE"
