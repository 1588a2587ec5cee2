# Sourced on the GPU machine (no network) by every step: where the offline bundle went.
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 BATCHPERF_CACHE_DIR=/tmp/bpcache
export VLLM_USE_FLASHINFER_SAMPLER=0  # flashinfer is not in the offline bundle
unset CI  # a job here saves and compares against its own baselines
[ -e /tmp/plugin.env ] && source /tmp/plugin.env
# model.sh touches this when the models are written (it may still be running).
wait_for_model() { while [ ! -e /tmp/model.done ]; do sleep 2; done; }
