"""The llama-cpp engine on a real llama.cpp, on the synthetic tiny model, on the CPU."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_batchperf.engines import OutOfMemory
from pytest_batchperf.engines import load_in_process as load
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.models.gguf_model import gguf_path
from pytest_batchperf.models.resolve import check_gguf, resolve
from pytest_batchperf.models.shapes import shape
from pytest_batchperf.profiles import BUILTIN
from pytest_batchperf.workload import (
    Request,
    Strategy,
    Workload,
    WorkloadSpec,
    build,
    fixed,
    lognormal,
    uniform,
)

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra 'llama')")


def spec_of(profile):
    return profile.engine_spec(resolve(profile.model, "gguf"))


@pytest.fixture(scope="module")
def engine():
    e = load(spec_of(BUILTIN["default"].with_overrides({"n_seq_max": 16})))
    e.warmup()
    yield e
    e.close()


def test_the_default_computes_on_the_usable_cores_less_one_and_says_so(engine):
    """The driver keeps a core (docs/results/cpu-noise.md); the environment records it."""
    from pytest_batchperf.device import compute_threads
    from pytest_batchperf.measure.interference import usable_cores

    threads = max(1, int(usable_cores()) - 1)
    assert compute_threads() == threads
    described = engine.describe()
    assert described["n_threads"] == described["compute_threads"] == threads


def test_the_engine_process_computes_apart_from_the_driver():
    """Pinned to the usable CPUs but the first, which the measuring thread keeps while a run
    measures (docs/results/cpu-noise.md)."""
    import os

    import psutil

    from pytest_batchperf.device import driver_pinned, engine_cpus
    from pytest_batchperf.engines import start

    spec = spec_of(BUILTIN["default"])
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        pytest.skip("one usable CPU: nothing to pin apart")
    assert spec.cpus == engine_cpus() == tuple(usable[1:])
    engine = start(spec, 60)
    try:
        child = psutil.Process(engine.pids()[0])
        assert tuple(sorted(child.cpu_affinity())) == spec.cpus
        with driver_pinned(spec.cpus):
            assert os.sched_getaffinity(0) == {usable[0]}
        assert sorted(os.sched_getaffinity(0)) == usable
    finally:
        engine.close()


class CountingDecodes:
    """Counts llama_decode calls made by the engine (wraps the real call)."""

    def __init__(self, engine, monkeypatch):
        self.calls = 0
        real = engine._decode

        def counted(n):
            self.calls += 1
            return real(n)

        monkeypatch.setattr(engine, "_decode", counted)


def _workload(outputs, prompt=8):
    reqs = tuple(Request(i, tuple(range(10, 10 + prompt)), n) for i, n in enumerate(outputs))
    return Workload(spec=None, requests=reqs)


def test_synthetic_gguf_is_deterministic_and_cached():
    s = shape("tiny")
    path = gguf_path(s)
    check_gguf(path)
    assert gguf_path(s) == path and path.stat().st_size > 5_000_000


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_request_generates_exactly_its_tokens(engine, strategy):
    wl = build(
        WorkloadSpec(num_requests=6, prompt=fixed(12), output=fixed(5), seed=4), engine.vocab_size
    )
    trace = engine.run_round(wl, strategy, 3)
    assert sorted(r.output_tokens for r in trace.requests) == [5] * 6
    for r in trace.requests:
        assert r.arrival <= r.scheduled <= r.token_times[0] <= r.finished <= trace.end
        assert r.token_times == sorted(r.token_times)


def test_batching_decodes_many_sequences_per_call(engine, monkeypatch):
    counter = CountingDecodes(engine, monkeypatch)
    engine.run_round(_workload([16] * 8), Strategy.SEQUENTIAL, 1)
    sequential = counter.calls
    counter.calls = 0
    engine.run_round(_workload([16] * 8), Strategy.CONTINUOUS, 8)
    # 8 requests x 16 tokens one at a time, vs all 8 sequences in each call.
    assert sequential == 8 * 16
    assert counter.calls == 16


def test_continuous_refills_a_slot_at_once_static_waits_for_the_wave(engine):
    wl = _workload([2, 24, 2, 24])
    static = {r.request_id: r for r in engine.run_round(wl, Strategy.STATIC, 2).requests}
    cont = {r.request_id: r for r in engine.run_round(wl, Strategy.CONTINUOUS, 2).requests}
    # Static: request 2 starts only once the whole first wave (incl. the 24-token one) ends.
    assert static[2].scheduled >= static[1].finished
    # Continuous: request 2 takes request 0's slot while request 1 is still generating.
    assert cont[2].scheduled < cont[1].finished
    assert cont[2].scheduled >= cont[0].finished


def test_bucketed_waves_group_by_length(engine):
    reqs = tuple(Request(i, tuple(range(10, 10 + n)), 3) for i, n in enumerate([40, 4, 40, 4]))
    trace = engine.run_round(Workload(None, reqs), Strategy.BUCKETED, 2)
    assert [sorted(r.prompt_len for r in w) for w in trace.waves] == [[4, 4], [40, 40]]
    m = round_metrics(trace, waves=True)
    assert m["padding_waste_pct"] == 0.0
    static = round_metrics(engine.run_round(Workload(None, reqs), Strategy.STATIC, 2), waves=True)
    assert static["padding_waste_pct"] > 30


def test_batch_larger_than_n_seq_max_is_out_of_memory(engine):
    with pytest.raises(OutOfMemory, match="exceeds the profile's n_seq_max=16"):
        engine.run_round(_workload([2] * 4), Strategy.CONTINUOUS, 32)


def test_backend_sampling_picks_the_same_greedy_tokens_as_the_host_argmax(engine, monkeypatch):
    """llama.cpp's in-graph greedy sampler, read back by batch position, against numpy's
    argmax over the logits: same tokens at every step, mixed prompt lengths and continuous
    refills included (a wrong position would pick another row's token)."""
    spec = WorkloadSpec(
        num_requests=12, prompt=lognormal(40, sigma=0.8, low=4, high=200), output=uniform(4, 24)
    )
    backend = load(
        spec_of(BUILTIN["default"].with_overrides({"n_seq_max": 16, "backend_sampling": True}))
    )
    picked = {}
    try:
        for name, e in (("host", engine), ("backend", backend)):
            steps = picked[name] = []
            real = e._sample

            def recorded(rows, n, real=real, steps=steps):
                tokens = real(rows, n)
                steps.append(tokens.tolist())
                return tokens

            monkeypatch.setattr(e, "_sample", recorded)
            e.run_round(build(spec, e.vocab_size), Strategy.CONTINUOUS, 4)
    finally:
        backend.close()
    assert picked["host"] == picked["backend"] and sum(map(len, picked["host"])) > 100


def test_host_argmax_follows_llama_cpp_when_it_moves_its_logits_buffer(engine, monkeypatch):
    """The engine keeps one view of llama.cpp's logits buffer; a buffer at a new address
    (llama.cpp reallocates it when more outputs need room) gets a new view, not stale rows."""
    import ctypes

    import numpy as np

    from pytest_batchperf.engines import llama_cpp as module

    shape = (engine.knobs.n_batch, engine.vocab_size)
    buffers = [np.zeros(shape, dtype=np.float32) for _ in range(2)]
    buffers[0][0, 5] = buffers[1][0, 7] = 1.0
    current = []
    monkeypatch.setattr(
        module.L,
        "llama_get_logits",
        lambda ctx: current[-1].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
    )
    current.append(buffers[0])
    assert engine._sample(1, 1).tolist() == [5]
    current.append(buffers[1])
    assert engine._sample(1, 1).tolist() == [7]


def test_kv_cache_full_is_out_of_memory():
    e = load(spec_of(BUILTIN["default"].with_overrides({"n_ctx": 256, "n_batch": 256})))
    try:
        with pytest.raises(OutOfMemory, match="no KV cache slot"):
            e.run_round(_workload([100] * 8, prompt=100), Strategy.CONTINUOUS, 8)
        # The engine still works after the failed batch.
        ok = e.run_round(_workload([4]), Strategy.SEQUENTIAL, 1)
        assert ok.requests[0].output_tokens == 4
    finally:
        e.close()


SUITE = """
from pytest_batchperf.workload import WorkloadSpec, fixed
WL = WorkloadSpec(num_requests=32, prompt=fixed(16), output=fixed(32), seed=5)

def test_continuous(batchperf):
    batchperf.run(WL, "continuous", 8)
"""


def test_end_to_end_a_a_passes_and_real_slowdown_fails(pytester):
    """The default profile on real llama.cpp: save, rerun (A/A), then slow the engine for
    real (``slowdown=9`` busy-waits 9x each decode call's duration after it: about 90 %
    less throughput): caught, with readable lines, and the baseline untouched.

    Tolerance 60 %: on a shared 2-core VM whole processes run 30-45 % slower now and then
    (docs/results/cpu-gate.md), so a 10 % gate between two processes is a
    coin toss there; this checks the mechanism, not the machine."""
    pytester.makepyfile(test_e2e=SUITE)
    common = (
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "--batchperf-rounds",
        "3",
        "--batchperf-warmup",
        "0",
        "--batchperf-tolerance",
        "*=60",
    )
    pytester.runpytest_subprocess(
        *common, "--batchperf-save", "--batchperf-runs", "5"
    ).assert_outcomes(passed=1)
    [path] = (pytester.path / "baselines").rglob("default.json")
    saved = json.loads(path.read_text())
    env = saved["environment"]
    assert env["engine"]["engine"] == "llama-cpp" and env["engine"]["model_hash"].startswith(
        "synthetic-tiny-gguf-"
    )
    assert (
        len(saved["cases"]["test_e2e.py::test_continuous"]["metrics"]["output_tok_s"]["runs"]) == 5
    )

    aa = pytester.runpytest_subprocess(*common)
    aa.assert_outcomes(passed=1)
    assert "regressed" not in aa.stdout.str().lower()

    # 9x, not 3x: at 3x one noisy hour read -59 % against the 60 % tolerance
    slow = pytester.runpytest_subprocess(*common, "--batchperf-set", "slowdown=9")
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(
        [
            "*REGRESSED test_e2e.py::test_continuous*",
            "*output_tok_s: * -> * 1/s (-*%*5 vs * runs; tolerance 60%*",
        ]
    )
    results = json.loads((pytester.path / "reports" / "results.json").read_text())
    comp = {c["metric"]: c for c in results["cases"]["test_e2e.py::test_continuous"]["comparisons"]}
    assert comp["output_tok_s"]["change"] < -0.6
    assert path.read_text() == json.dumps(saved, indent=2, sort_keys=True) + "\n"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_use_mmap_false_reads_the_weights_into_memory_instead_of_mapping_the_file():
    def mappings(path) -> int:  # other engines of this process may map the file too
        return Path("/proc/self/maps").read_text().count(str(path))

    for use_mmap in (True, False):
        profile = BUILTIN["default"].with_overrides({"use_mmap": use_mmap})
        before = mappings(resolve(profile.model, "gguf").path)
        e = load(spec_of(profile))
        try:
            assert (mappings(e.path) > before) is use_mmap
            trace = e.run_round(_workload([4, 4]), Strategy.CONTINUOUS, 2)
            assert [r.output_tokens for r in trace.requests] == [4, 4]
        finally:
            e.close()


def test_the_engines_process_loads_llama_cpp_before_numpy():
    """With numpy's libraries loaded first, llama.cpp's CUDA build segfaulted loading the
    model; the engine's process imports llama_cpp before anything of ours imports numpy."""
    code = (  # records where each import starts (sys.modules' order is not that)
        "import pickle, sys\n"
        "started = []\n"
        "class Record:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        started.append(name)\n"
        "sys.meta_path.insert(0, Record())\n"
        "from pytest_batchperf.engines import child\n"
        "spec = pickle.loads(sys.stdin.buffer.read())\n"
        "child.import_engine_package(spec.engine)\n"
        "import numpy\n"
        "print(started.index('llama_cpp') < started.index('numpy'))\n"
    )
    spec = pickle.dumps(spec_of(BUILTIN["default"]))
    out = subprocess.run([sys.executable, "-c", code], input=spec, capture_output=True, check=True)
    assert out.stdout.strip() == b"True"
