#!/usr/bin/env bash
# On the GPU machine: join the vLLM bundle parts copied to /tmp/parts (bundle.sh vllm),
# install them into /tmp/site, install this repo, write the 1B synthetic model.
set -euo pipefail
source "$(dirname "$0")/device_env.sh"
mkdir -p /tmp/whl
cat /tmp/parts/vllm.tar.* | tar x -C /tmp/whl
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
python3 -c "import vllm, pytest_batchperf; print('vllm', vllm.__version__)"
python3 -c "
import time; t=time.time()
from pytest_batchperf.models.hf_model import hf_model_dir; from pytest_batchperf.models.shapes import shape
print(hf_model_dir(shape('1b')), f'{time.time()-t:.0f}s')"
