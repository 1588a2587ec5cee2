#!/usr/bin/env bash
# On the GPU machine: write synthetic HF models (default: 1b) into the plugin's cache. Needs
# only numpy, safetensors and tokenizers (there with transformers), so it can run while the
# vLLM bundle is still arriving:  setsid bash scripts/gpu/model.sh 8b > /tmp/model.log 2>&1 &
set -euo pipefail
source "$(dirname "$0")/env.sh"
export PYTHONPATH="$PWD:$PYTHONPATH"
for s in "${@:-1b}"; do
python3 -c "
import sys, time; t=time.time()
from pytest_batchperf.models.hf_model import hf_model_dir; from pytest_batchperf.models.shapes import shape
print(hf_model_dir(shape(sys.argv[1])), f'{time.time()-t:.0f}s')" "$s"
done
touch /tmp/model.done
