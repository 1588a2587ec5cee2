#!/usr/bin/env bash
# On the GPU machine: join the vLLM bundle parts moved to /tmp/parts (scripts/gpu/bundle.sh
# vllm), install them into /tmp/site, install this repo (its entry points load the
# plugin and vLLM's slowdown plugin). Runbook: README.md beside this file.
set -euo pipefail
source "$(dirname "$0")/env.sh"
mkdir -p /tmp/whl
cat /tmp/parts/vllm.tar.* | tar x -C /tmp/whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/whl/*.whl
# Every package the bundle needs that neither it nor the machine has, named at once.
mkdir -p /tmp/out && python3 scripts/gpu/bundle_check.py /tmp/whl/*.whl > /tmp/out/bundle_check.txt || true
# The fill-in part (bundle.sh fillin), if carried: its wheels that meet what is missing or too old.
if ls /tmp/parts/fillin.tar.* > /dev/null 2>&1; then
  mkdir -p /tmp/fillin && cat /tmp/parts/fillin.tar.* | tar x -C /tmp/fillin
  python3 scripts/gpu/bundle_check.py --fill-from /tmp/fillin /tmp/whl/*.whl > /tmp/out/filled_in.txt
  [ -s /tmp/out/filled_in.txt ] && xargs python3 -m pip install -q --no-index --no-deps --no-compile \
      --target /tmp/site < /tmp/out/filled_in.txt
fi
# The entry points load the plugin; without them pytest loads it from $PYTEST_PLUGINS.
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    || echo "export PYTEST_PLUGINS=pytest_batchperf.plugin" > /tmp/plugin.env
python3 -c "import vllm, pytest_batchperf; print('vllm', vllm.__version__)"
