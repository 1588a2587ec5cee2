# Source on the GPU machine (no network): the environment every device step runs in.
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 BATCHPERF_CACHE_DIR=/tmp/bpcache
export VLLM_USE_FLASHINFER_SAMPLER=0  # flashinfer is not in the offline bundle
# device_model.sh touches this when the models are written (it may still be running).
wait_for_model() { while [ ! -e /tmp/model.done ]; do sleep 2; done; }
