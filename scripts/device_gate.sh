#!/usr/bin/env bash
# On the GPU machine, after device_setup.sh and device_model.sh: the gate's A/A false alarms
# and A/B detection with every repetition in a new process (and, with GPU_TESTS=1 first,
# the slowdown knob proven on the real engine). SLOWDOWNS=0.10,0.25 and
# GATE_ARGS='--set slowdown_on=gpu' pass through to gpu_gate_quality.py measure.
#   setsid bash scripts/device_gate.sh /tmp/out AA AB CASES PROFILE > /tmp/gate.log 2>&1 &
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
out=${1:?output dir}; aa=${2:-10}; ab=${3:-2}; cases=${4:-continuous:32,static:128}
profile=${5:-vllm-synthetic-8b}
mkdir -p "$out"
if [ "${GPU_TESTS:-0}" = 1 ]; then
    date -u +"gpu tests %FT%TZ"
    python3 -m pytest tests/test_vllm_engine.py -p no:cacheprovider -k slowdown -m gpu -v \
        > "$out/gpu_tests.log" 2>&1
fi
date -u +"gate quality %FT%TZ"
python3 scripts/gpu_gate_quality.py measure --out "$out/gate-quality-h100.json" \
    --profile "$profile" --cases "$cases" --aa "$aa" --ab "$ab" --slowdowns "${SLOWDOWNS:-0.05,0.10,0.25}" ${GATE_ARGS:-} > "$out/measure.log" 2>&1
python3 scripts/gpu_gate_quality.py analyse "$out/gate-quality-h100.json" > "$out/gate-quality-h100.md" 2>&1
date -u +"done %FT%TZ"
touch "$out/DONE"
