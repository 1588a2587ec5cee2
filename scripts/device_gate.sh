#!/usr/bin/env bash
# On the GPU machine, after device_setup.sh (device_model.sh may still be writing): the
# gate's A/A false alarms and A/B detection with every repetition in a new process. With
# GPU_TESTS=1 first the GPU slowdown knob proven on the real engine; with OVERHEAD=1 last
# the overhead pair (bare LLM.generate, then the plugin) on the profile. SLOWDOWNS=0.10,0.25
# and GATE_ARGS='--set slowdown_on=gpu' pass through to gpu_gate_quality.py measure.
#   setsid bash scripts/device_gate.sh /tmp/out AA AB CASES PROFILE > /tmp/gate.log 2>&1 &
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
out=${1:?output dir}; aa=${2:-10}; ab=${3:-2}; cases=${4:-continuous:32,static:128}
profile=${5:-vllm-synthetic-8b}
mkdir -p "$out"
if [ "${GPU_TESTS:-0}" = 1 ]; then
    date -u +"gpu tests %FT%TZ"
    python3 -m pytest -p no:cacheprovider -p no:randomly -v \
        "tests/test_vllm_engine.py::test_slowdown_reaches_the_engine_core_process[offline-gpu-50.0]" \
        > "$out/gpu_tests.log" 2>&1
fi
wait_for_model
date -u +"gate quality %FT%TZ"
python3 scripts/gpu_gate_quality.py measure --out "$out/gate-quality-h100.json" \
    --profile "$profile" --cases "$cases" --aa "$aa" --ab "$ab" --slowdowns "${SLOWDOWNS:-0.05,0.10,0.25}" ${GATE_ARGS:-} > "$out/measure.log" 2>&1
python3 scripts/gpu_gate_quality.py analyse "$out/gate-quality-h100.json" > "$out/gate-quality-h100.md" 2>&1
if [ "${OVERHEAD:-0}" = 1 ]; then
    date -u +"overhead %FT%TZ"
    python3 scripts/bare_vllm.py --profile "$profile" > "$out/overhead-bare.log" 2>&1
    python3 scripts/gpu_overhead.py --isolate --profile "$profile" > "$out/overhead-plugin.log" 2>&1
fi
date -u +"done %FT%TZ"
touch "$out/DONE"
