#!/usr/bin/env bash
# On the GPU machine, after setup.sh (the vLLM bundle) and `model.sh 8b`: `vllm serve` through
# the openai-http engine, profile vllm-serve-8b of examples/servers.toml. Output under /tmp/out.
#   setsid bash scripts/gpu/vllm_serve.sh > /tmp/out/job.log 2>&1 &
# STAGES (default "import sweep load priority faults"); RUNS=1 ROUNDS=2 size the saves.
# The offline engine at the same loads is the committed baselines/nvidia-h100-80gb-hbm3/
# vllm-synthetic-8b.json (same GPU class), so no offline run is needed here.
set -uo pipefail
source "$(dirname "$0")/env.sh"
snapshot
out=/tmp/out; mkdir -p "$out"
stages=${STAGES:-import sweep load priority faults}
# SERVER / PATTERN: another server profile and its process's command-line pattern (the fault
# stage was tried on the CPU with llama-server-cpu and llama-server).
read -r -a server <<< "${SERVER:---batchperf-profiles-file examples/servers.toml --batchperf-profile vllm-serve-8b}"
pattern=${PATTERN:-vllm.entrypoints.openai.api_server}
save=(--batchperf-save --batchperf-runs "${RUNS:-1}" --batchperf-rounds "${ROUNDS:-2}"
      --batchperf-baseline-dir "$out/baselines")
wait_for_model
if [[ $stages == *import* ]]; then  # a missing package is named here, in one line
  stamp import
  python3 -c "import vllm.entrypoints.openai.api_server" > "$out/import.log" 2>&1
  echo "import rc=$? $(grep -m1 -o "No module named '[^']*'" "$out/import.log")" >> "$out/stages.txt"
fi
for suite in sweep load priority; do
  [[ $stages == *$suite* ]] || continue
  file=$(case $suite in sweep) echo batch_sweep;; load) echo latency_under_load;; *) echo priority;; esac)
  stamp "$suite"
  python3 scripts/pytest_job.py "suites/test_$file.py" -p no:cacheprovider "${server[@]}" "${save[@]}" \
      --batchperf-report "$out/$suite" > "$out/$suite.log" 2>&1
  echo "$suite rc=$?" >> "$out/stages.txt"
  clear_gpu
done
# Faults on the real server: two cases; two seconds after the server's log shows the first
# request, the server is killed (then, in the second pass, stopped so that its requests hang).
# That case must error in one line and the next case pass on a fresh server.
request=${REQUEST:-POST /v1/completions}  # uvicorn's access line; llama-server: launch_slot
fault() {  # NAME SIGNAL
  local log="$out/fault-$1.log" t0 job server_log
  t0=$(date +%s)
  python3 scripts/pytest_job.py suites/test_batch_sweep.py -p no:cacheprovider "${server[@]}" \
      -k "B8-static or B8-continuous" --batchperf-batch-sizes 8 --batchperf-rounds 3 \
      --batchperf-set request_timeout_s=30 --batchperf-report "$out/fault-$1" > "$log" 2>&1 &
  job=$!
  for _ in $(seq 900); do
    kill -0 "$job" 2>/dev/null || break
    server_log=$(find /tmp -maxdepth 1 -name 'batchperf-server-*.log' -newermt "@$t0" | head -1)
    [ -n "$server_log" ] && grep -q "$request" "$server_log" && break
    sleep 1
  done
  sleep 2
  pkill "-$2" -f "$pattern" && echo "$1: sent SIG$2" >> "$out/stages.txt"
  wait "$job"
  echo "fault $1 rc=$? $(grep -c '^FAILED' "$log") failed, $(grep -o '[0-9]* passed' "$log")" >> "$out/stages.txt"
  clear_gpu
}
if [[ $stages == *faults* ]]; then
  stamp faults
  fault killed KILL
  fault hung STOP
fi
stamp done
touch "$out/DONE"
