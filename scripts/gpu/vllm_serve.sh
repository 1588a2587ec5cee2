#!/usr/bin/env bash
# On the GPU machine, after setup.sh (the vLLM bundle) and `model.sh 8b`: `vllm serve` through
# the openai-http engine (profiles vllm-serve-8b and vllm-serve-8b-priority of
# examples/servers.toml). Output under /tmp/out; DONE when finished.
#   setsid bash scripts/gpu/vllm_serve.sh > /tmp/out/job.log 2>&1 &
# STAGES (default "import suites priority faults offline"); RUNS=1 ROUNDS=2 size the saves.
#   suites:   the batch sweep and latency under load on one server, saved;
#   priority: the priority suite on the server capped at batch 8, saved;
#   faults:   one pytest of three cases: the server is killed in the first, stopped (hung)
#             in the second; each must error in one line, and the third pass on a fresh server
#             (FAULTS="KILL STOP"; another server: FAULT_PROFILE="--batchperf-profile
#             llama-server-cpu" REQUEST=launch_slot, the line its log writes per request);
#   offline:  the batch sweep on the offline engine (vllm-synthetic-8b), same machine, not saved.
set -uo pipefail
source "$(dirname "$0")/env.sh"
snapshot
out=/tmp/out; mkdir -p "$out"; rm -f "$out/DONE"
stages=${STAGES:-import suites priority faults offline}
servers=(--batchperf-profiles-file examples/servers.toml)
save=(--batchperf-save --batchperf-runs "${RUNS:-1}" --batchperf-rounds "${ROUNDS:-2}"
      --batchperf-baseline-dir "$out/baselines")
pytest_to() {  # NAME ARGS...: one pytest, its log and report under $out
  local name=$1; shift
  stamp "$name"
  python3 scripts/pytest_job.py -p no:cacheprovider "$@" --batchperf-report "$out/$name" \
      > "$out/$name.log" 2>&1
  echo "$name rc=$? $(tail -n 1 "$out/$name.log")" >> "$out/stages.txt"
  clear_gpu
}
wait_for_model
if [[ $stages == *import* ]]; then  # a missing package is named here, in one line
  stamp import
  python3 -c "import vllm.entrypoints.openai.api_server" > "$out/import.log" 2>&1
  echo "import rc=$? $(grep -m1 -o "No module named '[^']*'" "$out/import.log")" >> "$out/stages.txt"
fi
[[ $stages == *suites* ]] && pytest_to suites suites/test_batch_sweep.py \
    suites/test_latency_under_load.py "${servers[@]}" --batchperf-profile vllm-serve-8b "${save[@]}"
[[ $stages == *priority* ]] && pytest_to priority suites/test_priority.py "${servers[@]}" \
    --batchperf-profile vllm-serve-8b-priority "${save[@]}"

# The server our engine started: the process writing LOG whose parent does not (vllm serve's
# engine core writes the same log).
server_pid() {
  local p pids=()
  [ -n "$1" ] || return
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/fd/1" 2>/dev/null)" = "$1" ] && pids+=("${p#/proc/}")
  done
  for p in "${pids[@]}"; do
    [[ " ${pids[*]} " == *" $(awk '/^PPid/ {print $2}' "/proc/$p/status") "* ]] || { echo "$p"; return; }
  done
}
if [[ $stages == *faults* ]]; then
  stamp faults
  read -r -a profile <<< "${FAULT_PROFILE:-${servers[*]} --batchperf-profile vllm-serve-8b}"
  request=${REQUEST:-POST /v1/completions}  # uvicorn's access line
  python3 scripts/pytest_job.py -p no:cacheprovider suites/test_batch_sweep.py "${profile[@]}" \
      -k "B8-static or B8-continuous or B32-static" --batchperf-rounds 3 \
      --batchperf-set request_timeout_s=30 --batchperf-report "$out/faults" > "$out/faults.log" 2>&1 &
  job=$!
  old=$(ls /tmp/batchperf-server-*.log 2>/dev/null)  # other runs' logs
  # A restarted server appends to its predecessor's log: count requests since the last fault.
  declare -A seen=()
  faulted=
  for sig in ${FAULTS:-KILL STOP}; do  # once a fresh server logged 80 requests: past warm-up
    log=
    for _ in $(seq 1800); do
      kill -0 "$job" 2>/dev/null || break 2
      for f in $(ls /tmp/batchperf-server-*.log 2>/dev/null); do
        [[ $old == *"$f"* ]] && continue
        (( $(grep -c "$request" "$f") - ${seen[$f]:-0} >= 80 )) || continue
        pid=$(server_pid "$f")
        [ -n "$pid" ] && [ "$pid" != "$faulted" ] && log=$f && break
      done
      [ -n "$log" ] && break
      sleep 0.5
    done
    kill "-$sig" "$pid" && echo "faults: SIG$sig to server $pid ($log)" >> "$out/stages.txt"
    faulted=$pid
    seen[$log]=$(grep -c "$request" "$log")
  done
  wait "$job"
  echo "faults rc=$? $(grep -c '^FAILED\|^ERROR' "$out/faults.log") failed, $(tail -n 1 "$out/faults.log")" \
      >> "$out/stages.txt"
  clear_gpu
fi
[[ $stages == *offline* ]] && pytest_to offline suites/test_batch_sweep.py \
    --batchperf-profile vllm-synthetic-8b --batchperf-rounds "${ROUNDS:-2}"
stamp done
touch "$out/DONE"
