#!/usr/bin/env bash
# On the GPU machine, after device_setup.sh (device_model.sh may still be writing): the
# vLLM profile's suites saved as a fresh baseline, then run again in a new process and
# judged against it (A/A between processes).
#   setsid bash scripts/device_suites.sh /tmp/out > /tmp/out/suites.log 2>&1 &
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
out=${1:?output dir}; profile=${2:-vllm-synthetic-1b}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv > "$out/gpu.csv"
wait_for_model
rm -f "baselines/nvidia-h100-80gb-hbm3/$profile.json"
run() { python3 -m pytest suites -p no:cacheprovider --batchperf-profile "$profile" "$@"; echo "rc=$?"; }
date -u +"save start %FT%TZ"
run --batchperf-save --batchperf-report "$out/base" > "$out/base.log" 2>&1
cp baselines/nvidia-h100-80gb-hbm3/"$profile".json "$out/" 2>/dev/null
date -u +"A/A start %FT%TZ"
run --batchperf-report "$out/aa" > "$out/aa.log" 2>&1
date -u +"done %FT%TZ"
touch "$out/DONE"
