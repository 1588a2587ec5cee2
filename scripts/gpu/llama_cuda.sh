#!/usr/bin/env bash
# On the GPU machine (no network), with the llama bundle's parts and wheels in /tmp/parts
# (scripts/gpu/bundle.sh llama): one CUDA build of the llama.cpp that llama-cpp-python
# vendors gives llama-batched-bench, llama-server and the libraries llama-cpp-python loads
# (LLAMA_CPP_LIB_PATH), so both sides of the fidelity table run the same compiled code.
# Then the baseline save of the batch sweep and variable lengths on llama-cpp-cuda-1b (into a
# copy of baselines/, so that a save on the same setup adds a job), fidelity at npl 1-128
# with our decode step split by part, and llama-server's -np sweep. Output under /tmp/out
# (poll.sh packs it).
#   setsid bash scripts/gpu/llama_cuda.sh > /tmp/out/job.log 2>&1 &
# STAGES (default "save fidelity"; "probe" first tries which engine settings load, "backend"
# adds fidelity with backend sampling, "np" the -np sweep); TOOLS="" skips building
# llama-server; SUITES (default "batch_sweep variable_length") are saved in that order, RUNS=2
# (or RUNS_batch_sweep, RUNS_variable_length) ROUNDS=2 size the save;
# REPS=11 the fidelity runs.
set -uo pipefail
source "$(dirname "$0")/env.sh"
snapshot
out=/tmp/out; mkdir -p "$out"
stages=${STAGES:-save fidelity}
stamp setup
mkdir -p /tmp/llama && cat /tmp/parts/llama.tar.* | tar x -C /tmp/llama || exit 1
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/llama/*.whl || { touch "$out/DONE"; exit 1; }
tar xzf /tmp/llama/llama_cpp_python-*.tar.gz -C /tmp/llama
# The bindings are pure Python; their libraries come from the build below.
mkdir -p /tmp/site && cp -r /tmp/llama/llama_cpp_python-*/llama_cpp /tmp/site/
mkdir -p "$BATCHPERF_CACHE_DIR/sdist" && cp /tmp/llama/llama_cpp_python-*.tar.gz "$BATCHPERF_CACHE_DIR/sdist/"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
    || export PYTEST_PLUGINS=pytest_batchperf.plugin
python3 -c "
from pytest_batchperf.models.gguf_model import gguf_path; from pytest_batchperf.models.shapes import shape
print(gguf_path(shape('1b')))" > "$out/model.txt" 2>&1 &
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  nvcc --version | tail -2; cmake --version | head -1
  grep -m1 'model name' /proc/cpuinfo; nproc
} > "$out/machine.txt" 2>&1
stamp build
python3 -m pytest_batchperf.engines.llama_build --target llama --target llama-batched-bench \
    ${TOOLS---target llama-server} -D GGML_CUDA=ON -D CMAKE_CUDA_ARCHITECTURES=90 -D BUILD_SHARED_LIBS=ON \
    > "$out/build.txt" 2>&1
rc=$?
cp "$BATCHPERF_CACHE_DIR"/llama.cpp-*-*/build.log "$out/build.log" 2>/dev/null
echo "build rc=$rc" >> "$out/stages.txt"
[ $rc = 0 ] || { touch "$out/DONE"; exit 1; }
bin=$(dirname "$(head -1 "$out/build.txt")")
export LLAMA_CPP_LIB_PATH=$bin PATH="$bin:$PATH"
python3 -c "import llama_cpp as L; print('llama-cpp-python', L.__version__, 'gpu offload', L.llama_supports_gpu_offload())" >> "$out/machine.txt" 2>&1
wait  # the model
if [[ $stages == *probe* ]]; then
  stamp probe
  python3 scripts/gpu/llama_probe.py > "$out/probe.txt" 2>&1
fi
if [[ $stages == *save* ]]; then
  # Into a copy of the committed baselines: a save on the same setup adds a job to a case.
  [ -d "$out/baselines" ] || cp -r baselines "$out/baselines"
  knobs=()
  if [ -e "$out/probe.txt" ] && ! grep -q "isolated n_seq_max=256 backend_sampling=0: rc=0" "$out/probe.txt"; then
    knobs+=(--batchperf-set n_seq_max=128 --batchperf-batch-sizes 8,32,128)
  fi
  echo "save knobs: ${knobs[*]}" >> "$out/stages.txt"
  for suite in ${SUITES:-batch_sweep variable_length}; do
    runs=RUNS_$suite
    stamp "save $suite"
    python3 scripts/pytest_job.py "suites/test_$suite.py" \
        -p no:cacheprovider --batchperf-profile llama-cpp-cuda-1b --batchperf-save \
        --batchperf-runs "${!runs:-${RUNS:-2}}" --batchperf-rounds "${ROUNDS:-2}" ${knobs[@]+"${knobs[@]}"} \
        --batchperf-baseline-dir "$out/baselines" --batchperf-report "$out/save-$suite" \
        > "$out/save-$suite.log" 2>&1
    echo "save $suite rc=$?" >> "$out/stages.txt"
  done
fi
fidelity() {  # NAME [--set KEY=VALUE]
  python3 scripts/fidelity_llama_cpp.py --profile llama-cpp-cuda-1b --shapes 1b --npl 1,8,32,128 \
      --reps "${REPS:-11}" --bench "$bin/llama-batched-bench" --quiet-limit 0 --raw "$out/fidelity-$1.json" \
      "${@:2}" > "$out/fidelity-$1.log" 2>&1
  echo "fidelity $1 rc=$?" >> "$out/stages.txt"
}
if [[ $stages == *fidelity* ]]; then
  stamp fidelity
  fidelity host --steps
  [[ $stages == *backend* ]] && fidelity backend --set backend_sampling=true --steps
fi
if [[ $stages == *np* ]]; then
  stamp np
  python3 scripts/llama_server_sweep.py --profiles scripts/gpu/llama-server-slots-cuda.toml \
      --slots 1,8,32,64,128 --concurrency 256 --requests 256 --rate 1000 --rounds 2 --quiet-limit 0 \
      > "$out/np.log" 2>&1
  echo "np rc=$?" >> "$out/stages.txt"
fi
stamp done
touch "$out/DONE"
