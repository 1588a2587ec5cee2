# Sourced on the GPU machine (no network) by every step: where the offline bundle went.
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 BATCHPERF_CACHE_DIR=/tmp/bpcache
export VLLM_USE_FLASHINFER_SAMPLER=0  # flashinfer is not in the offline bundle
unset CI  # a job here saves and compares against its own baselines
[ -e /tmp/plugin.env ] && source /tmp/plugin.env
# Every `run` call copies the working tree over the repository again, so a job that runs
# across calls runs from its own copy: a save of 23 minutes was lost when a poll brought
# newer code under it and its report import failed.
snapshot() {
  rm -rf /tmp/src && cp -a "$PWD" /tmp/src && cd /tmp/src || exit 1
  export PYTHONPATH="/tmp/site:/tmp/src"
}
# model.sh touches this when the models are written (it may still be running).
wait_for_model() { while [ ! -e /tmp/model.done ]; do sleep 2; done; }
# The job scripts' own: a stage's start time in $out/stages.txt, and our leftover GPU
# processes cleared between stages (a stopped pytest leaves vLLM's engine core holding memory).
stamp() { date -u +"%s $1" >> "$out/stages.txt"; }
clear_gpu() { nvidia-smi --query-compute-apps=pid --format=csv,noheader | xargs -r kill -9; sleep 2; }
