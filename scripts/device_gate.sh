#!/usr/bin/env bash
# On the GPU machine, after device_setup.sh: the slowdown knob proven on a real engine,
# then the gate's A/A false alarms and A/B detection with every repetition in a new process.
#   setsid bash scripts/device_gate.sh /tmp/out AA AB CASES > /tmp/out/gate.log 2>&1 &
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
out=${1:?output dir}; aa=${2:-10}; ab=${3:-2}; cases=${4:-continuous:32,static:128}
mkdir -p "$out"
date -u +"gpu tests %FT%TZ"
python3 -m pytest tests/test_vllm_engine.py -p no:cacheprovider -k slowdown -m gpu -v \
    > "$out/gpu_tests.log" 2>&1
date -u +"gate quality %FT%TZ"
python3 scripts/gpu_gate_quality.py measure --out "$out/gate-quality-h100.json" \
    --cases "$cases" --aa "$aa" --ab "$ab" > "$out/measure.log" 2>&1
python3 scripts/gpu_gate_quality.py analyse "$out/gate-quality-h100.json" > "$out/gate-quality-h100.md" 2>&1
date -u +"done %FT%TZ"
touch "$out/DONE"
