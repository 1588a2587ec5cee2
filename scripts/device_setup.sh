#!/usr/bin/env bash
# On the GPU machine: join the vLLM bundle parts copied to /tmp/parts (bundle.sh vllm),
# install them into /tmp/site, install this repo. Models: scripts/device_model.sh.
# Runbook (learned the hard way): split the bundle into parts of at most 52 MiB (with the
# working tree a call carries 64 MiB); start scripts/device_model.sh with the first part
# (the 8b model takes 3-4 minutes); run long jobs under setsid and poll with
# device_poll.sh back to back (a machine idle for 30 s is gone, /tmp with it); never
# `pkill -f` a pattern your own command line contains (it kills the call, and the lease).
set -euo pipefail
source "$(dirname "$0")/device_env.sh"
mkdir -p /tmp/whl
cat /tmp/parts/vllm.tar.* | tar x -C /tmp/whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
python3 -c "import vllm, pytest_batchperf; print('vllm', vllm.__version__)"
