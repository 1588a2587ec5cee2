"""The vLLM engine adapter.

CPU part: knob handling, model resolution, and the conversion of vLLM's per-request
stats into traces, fed with RequestOutput/RequestStateStats-shaped records of a real run.
GPU part (skips without vllm or a GPU): a real engine on the tiny synthetic model.
"""

import importlib.util
from types import SimpleNamespace as NS

import pytest

from pytest_batchperf.engines import EngineCrashed, EngineError, EngineUnavailable, OutOfMemory
from pytest_batchperf.engines import load_in_process as load_spec
from pytest_batchperf.engines.config import KnobError, VLLMKnobs
from pytest_batchperf.engines.vllm_engine import (
    PREEMPTIONS,
    _classify,
    _Live,
    counter,
    fits,
    kv_cache_tokens,
    record_output,
)
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.measure.trace import RequestTrace, RoundTrace
from pytest_batchperf.models.resolve import ModelError, resolve
from pytest_batchperf.profiles import BUILTIN, Profile, ProfileError
from pytest_batchperf.workload import Request


def load(profile: Profile):
    return load_spec(profile.engine_spec())


def llm_kwargs(knobs):
    return VLLMKnobs.parse(knobs, "profile 'v'").llm_kwargs()


def stats(scheduled, first, last, n):
    """A RequestStateStats as vLLM 0.26 fills it (engine-core monotonic timestamps)."""
    return NS(
        num_generation_tokens=n,
        arrival_time=1.7e9,
        queued_ts=scheduled - 0.001,
        scheduled_ts=scheduled,
        first_token_ts=first,
        last_token_ts=last,
        first_token_latency=first - scheduled + 0.001,
        is_corrupted=False,
    )


def delta(rid, tokens, st, finished=False):
    return NS(request_id=rid, outputs=[NS(token_ids=tokens)], finished=finished, metrics=st)


def test_knobs_pass_through_and_stats_are_on():
    kw = llm_kwargs(
        {
            "gpu_memory_utilization": 0.5,
            "max_num_seqs": 64,
            "dtype": "bfloat16",
            "enable_prefix_caching": False,
            "slowdown": 0.1,
            "multiprocessing": False,
        }
    )
    assert kw == {
        "gpu_memory_utilization": 0.5,
        "max_num_seqs": 64,
        "dtype": "bfloat16",
        "enable_prefix_caching": False,
        "disable_log_stats": False,
    }


def test_unknown_knob_is_refused_in_one_line():
    with pytest.raises(KnobError, match="unknown vllm knob.*gpu_mem_util") as info:
        llm_kwargs({"gpu_mem_util": 0.5})
    assert "\n" not in str(info.value)


def test_builtin_profile_knobs_are_all_known():
    llm_kwargs(BUILTIN["vllm-synthetic-1b"].knobs)


def test_model_directory_must_exist(tmp_path):
    with pytest.raises(ModelError, match="not a Hugging Face model directory"):
        resolve(str(tmp_path / "nowhere"), "hf")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    ref = resolve(str(tmp_path), "hf")
    assert ref.path == tmp_path and len(ref.hash) == 16 and ref.shape is None


def test_deltas_become_token_times_on_vllms_clock():
    # Recorded from a 4-token request: one delta per engine-core iteration; the stats
    # object is live, so each delta carries the iteration's last_token_ts.
    req = Request(7, (5, 6, 7), 4)
    live = _Live(req, RequestTrace(7, 3, arrival=100.0))
    st = stats(scheduled=100.010, first=100.050, last=100.050, n=1)
    offset = 2.0  # perf_counter - monotonic
    assert not record_output(live, delta("r1-7", [11], st), offset, received=999.0)
    for t in (100.060, 100.071):
        st.last_token_ts = t
        assert not record_output(live, delta("r1-7", [12], st), offset, received=999.0)
    st.last_token_ts = 100.080
    assert record_output(live, delta("r1-7", [13], st, finished=True), offset, received=999.0)
    tr = live.trace
    assert tr.token_times == pytest.approx([102.050, 102.060, 102.071, 102.080])
    assert tr.scheduled == pytest.approx(102.010)
    assert tr.finished == pytest.approx(102.080)
    assert tr.error is None
    tr.arrival = 101.99
    m = round_metrics(RoundTrace(101.99, 102.09, [tr]))
    assert m["ttft_ms_p50"] == pytest.approx(60.0)
    assert m["tpot_ms_p50"] == pytest.approx(10.0)
    assert m["itl_ms_p99"] == pytest.approx(11.0, abs=0.1)


def test_multi_token_delta_and_missing_stats():
    live = _Live(Request(1, (5,), 3), RequestTrace(1, 1, arrival=0.0))
    assert not record_output(live, delta("a", [1, 2], None), 0.0, received=5.0)
    assert record_output(live, delta("a", [], None, finished=True), 0.0, received=6.0)
    assert live.trace.token_times == [5.0, 5.0]
    assert "returned 2 tokens, 3 were asked for" in live.trace.error


def test_counters_sum_over_engines():
    metrics = [
        NS(name=PREEMPTIONS, labels={"engine": "0"}, value=3),
        NS(name=PREEMPTIONS, labels={"engine": "1"}, value=2),
        NS(name="vllm:kv_cache_usage_perc", labels={}, value=0.4),
    ]
    assert counter(metrics, PREEMPTIONS) == 5
    assert counter(metrics, "vllm:absent") == 0


def test_kv_capacity_and_fit():
    assert kv_cache_tokens(NS(num_gpu_blocks=1000, block_size=16)) == 16000
    assert kv_cache_tokens(NS(num_gpu_blocks=None, block_size=16)) == 0
    reqs = tuple(Request(i, (1,) * 100, 28) for i in range(8))
    assert fits(reqs, 8, 1024)
    assert not fits(reqs, 8, 1023)
    assert fits(reqs, 4, 512)


def test_only_a_priority_case_may_keep_more_in_flight_than_max_num_seqs():
    """The priority suite keeps 32 in flight against max_num_seqs = 8, so that the queue is
    the engine's; any other batch past the engine's bound is refused as not fitting."""
    from pytest_batchperf.engines.vllm_engine import VLLMEngine
    from pytest_batchperf.workload import Workload

    engine = object.__new__(VLLMEngine)
    engine.max_num_seqs, engine.max_model_len, engine.kv_tokens = 8, 2048, 10**6
    two_classes = Workload(None, tuple(Request(i, (1,) * 8, 4, priority=i % 2) for i in range(32)))
    one_class = Workload(None, tuple(Request(i, (1,) * 8, 4) for i in range(32)))
    engine.priority = True
    engine._check(two_classes, 32)
    with pytest.raises(OutOfMemory, match="max_num_seqs=8"):
        engine._check(one_class, 32)
    engine.priority = False  # an FCFS engine ignores the classes: the bound holds
    with pytest.raises(OutOfMemory, match="max_num_seqs=8"):
        engine._check(two_classes, 32)


def test_vllm_failures_map_to_plugin_errors():
    oom = _classify(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "run a round")
    assert isinstance(oom, OutOfMemory) and "\n" not in str(oom)

    class EngineDeadError(Exception):
        pass

    assert isinstance(_classify(EngineDeadError("core gone"), "run"), EngineCrashed)
    other = _classify(ValueError("bad\nmultiline"), "start vLLM")
    assert type(other) is EngineError and str(other) == "vLLM failed to start vLLM: ValueError: bad"


def test_bad_api_and_slowdown_are_refused_before_vllm_loads():
    for knobs, message in (
        ({"api": "rest"}, "api must be"),
        ({"slowdown": -0.1}, "slowdown must be >= 0"),
        ({"slowdown_on": "cpu"}, "slowdown_on must be host or gpu"),
    ):
        with pytest.raises(ProfileError, match=message):
            Profile("v", "vllm", "synthetic:tiny", "cuda", knobs, isolate=False).typed_knobs()


def test_slowdown_busy_waits_the_fraction_of_each_step():
    import time

    from pytest_batchperf.engines.vllm_slowdown import slowed

    def step(seconds):
        time.sleep(seconds)
        return "outputs"

    start = time.perf_counter()
    assert slowed(step, 0.5)(0.02) == "outputs"
    assert time.perf_counter() - start >= 0.02 * 1.5  # a lower bound: the wait is busy


def test_gpu_slowdown_spins_the_fraction_of_the_engines_own_step_time():
    """On a GPU-bound engine the gap between steps is the GPU's step time: the spin queued
    before each step is the fraction of that gap, less the spin it added itself; an idle
    gap (between rounds) is not a step. A fake clock and spin kernel stand in for CUDA."""
    from pytest_batchperf.engines.vllm_slowdown import gpu_slowed

    now, spins = [0.0], []
    step = gpu_slowed(
        lambda: "outputs", 0.25, spin=spins.append, cycles_per_s=lambda: 1e9, clock=lambda: now[0]
    )

    def gap_then_step(seconds):
        now[0] += seconds
        return step()

    assert gap_then_step(0.0) == "outputs" and spins == []  # no step time known yet
    gap_then_step(0.010)
    assert spins == [2_500_000]  # 25 % of 10 ms at 1 GHz
    gap_then_step(0.010 + 0.0025)  # the engine's 10 ms plus the spin just added
    assert spins[-1] == 2_500_000
    gap_then_step(5.0)  # idle between rounds: the estimate stands
    assert spins[-1] == 2_500_000
    for _ in range(30):  # the engine gets faster: the spin follows
        gap_then_step(0.004 + spins[-1] / 1e9)
    assert spins[-1] == pytest.approx(1_000_000, rel=0.01)


def test_slowdown_plugin_patches_the_engine_core_once(monkeypatch):
    """register() as vLLM calls it in the engine core's process, on a stand-in EngineCore."""
    import sys
    import types

    from pytest_batchperf.engines import vllm_slowdown

    class EngineCore:
        def step(self):
            return "step"

        def step_with_batch_queue(self):
            return "queued"

    core = types.ModuleType("vllm.v1.engine.core")
    core.EngineCore = EngineCore
    monkeypatch.setitem(sys.modules, "vllm.v1.engine.core", core)
    monkeypatch.delenv(vllm_slowdown.ENV, raising=False)
    vllm_slowdown.register()
    assert not hasattr(EngineCore.step, "batchperf_slowdown")  # unset: vLLM untouched
    monkeypatch.setenv(vllm_slowdown.ENV, "0.25")
    vllm_slowdown.register()
    vllm_slowdown.register()  # vLLM and the engine both call it: no double wrapping
    assert EngineCore.step.batchperf_slowdown == 0.25
    assert EngineCore.step.__wrapped__.__name__ == "step"
    assert (EngineCore().step(), EngineCore().step_with_batch_queue()) == ("step", "queued")
    monkeypatch.setenv(vllm_slowdown.ENV_ON, "gpu")
    vllm_slowdown.register()
    assert EngineCore.step.batchperf_slowdown_on == "gpu"
    assert EngineCore.step.__wrapped__.__name__ == "step"  # re-wrapped, not stacked
    monkeypatch.setenv(vllm_slowdown.ENV, "0.0")  # the next engine of this process: restored
    vllm_slowdown.register()
    assert not hasattr(EngineCore.step, "batchperf_slowdown")
    assert not hasattr(EngineCore.step_with_batch_queue, "batchperf_slowdown")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_without_vllm_the_engine_is_unavailable_with_the_reason():
    with pytest.raises(EngineUnavailable, match="needs vllm"):
        load(Profile("v", "vllm", "synthetic:tiny", "cuda", isolate=False))


def _gpu() -> bool:
    from pytest_batchperf.measure import nvml

    return nvml.available()


gpu = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or not _gpu(),
    reason="needs vllm and an NVIDIA GPU (pip install 'pytest-batchperf[vllm]')",
)


TINY_KNOBS = {
    "gpu_memory_utilization": 0.2,
    "max_model_len": 512,
    "max_num_seqs": 16,
    "enforce_eager": True,
    "dtype": "bfloat16",
}


@pytest.fixture(scope="module", params=["offline", "async"])
def tiny_engine(request):
    profile = Profile(
        "vllm-tiny",
        "vllm",
        "synthetic:tiny",
        "cuda",
        {**TINY_KNOBS, "api": request.param},
        isolate=False,
    )
    engine = load(profile)
    engine.warmup()
    yield engine
    engine.close()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["sequential", "static", "continuous"])
def test_real_round_on_the_gpu(tiny_engine, strategy):
    from pytest_batchperf.workload import Strategy, WorkloadSpec, build, fixed, uniform

    wl = build(
        WorkloadSpec(num_requests=12, prompt=uniform(8, 40), output=fixed(9), seed=1),
        tiny_engine.vocab_size,
    )
    trace = tiny_engine.run_round(wl, Strategy(strategy), 4)
    assert all(r.output_tokens == 9 and r.error is None for r in trace.requests)
    for r in trace.requests:
        assert r.arrival <= r.scheduled <= r.token_times[0] <= r.finished <= trace.end
        assert r.token_times == sorted(r.token_times)
    assert trace.stats["preemptions"] == 0
    assert tiny_engine.describe()["kv_cache_tokens"] >= 16 * 48
    if strategy == "static":
        assert [len(w) for w in trace.waves] == [4, 4, 4]
    m = round_metrics(trace, waves=Strategy(strategy).waves)
    assert m["output_tok_s"] > 0 and m["output_tokens"] == 12 * 9


@gpu
@pytest.mark.gpu
def test_poisson_arrivals_are_admitted_when_due(tiny_engine):
    from pytest_batchperf.workload import Arrival, Strategy, WorkloadSpec, build, fixed

    wl = build(
        WorkloadSpec(
            num_requests=10,
            prompt=fixed(16),
            output=fixed(6),
            seed=2,
            arrival=Arrival("poisson", rate=50.0),
        ),
        tiny_engine.vocab_size,
    )
    trace = tiny_engine.run_round(wl, Strategy.CONTINUOUS, 4)
    for r in trace.requests:
        assert r.scheduled >= r.arrival and r.output_tokens == 6
    assert trace.end - trace.start >= max(r.arrival_s for r in wl.requests)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize(
    "api,place,fraction",
    [("offline", "host", 1.0), ("async", "host", 1.0), ("offline", "gpu", 50.0)],
)
def test_slowdown_reaches_the_engine_core_process(api, place, fraction):
    """The knob must slow the engine core in its own process (vLLM's default), not only
    the front end: a 100 % host slowdown at least halves throughput on a real engine. The
    tiny model is host-bound, so a GPU spin of a fraction of its step hides behind the
    host's work, as slower kernels would; a spin of 50 steps shows that it lands on the
    stream the model runs on (proportionality on a GPU-bound model: docs/results/)."""
    from pytest_batchperf.workload import Strategy, WorkloadSpec, build, fixed

    def tok_s(slowdown):
        engine = load(
            Profile(
                "vllm-tiny",
                "vllm",
                "synthetic:tiny",
                "cuda",
                {**TINY_KNOBS, "api": api, "slowdown": slowdown, "slowdown_on": place},
            )
        )
        try:
            wl = build(
                WorkloadSpec(num_requests=16, prompt=fixed(16), output=fixed(64), seed=1),
                engine.vocab_size,
            )
            engine.run_round(wl, Strategy.CONTINUOUS, 4)
            return max(
                round_metrics(engine.run_round(wl, Strategy.CONTINUOUS, 4))["output_tok_s"]
                for _ in range(2)
            )
        finally:
            engine.close()

    assert tok_s(fraction) < 0.7 * tok_s(0.0)


@gpu
@pytest.mark.gpu
def test_batch_beyond_max_num_seqs_does_not_fit(tiny_engine):
    from pytest_batchperf.workload import Strategy, WorkloadSpec, build

    wl = build(WorkloadSpec(num_requests=4), tiny_engine.vocab_size)
    with pytest.raises(OutOfMemory, match="max_num_seqs=16"):
        tiny_engine.run_round(wl, Strategy.CONTINUOUS, 32)
    assert tiny_engine.run_round(wl, Strategy.CONTINUOUS, 4).requests  # still usable


# The feasibility limit a sweep records when the engine raises OutOfMemory (as the vLLM
# engine does past max_num_seqs or the KV cache), checked through the plugin on a fake.
LIMITED_ENGINE = """
from pytest_batchperf.engines import OutOfMemory
from simulated_engine import SimulatedEngine

class LimitedEngine(SimulatedEngine):
    def run_round(self, workload, strategy, batch_size):
        if batch_size > 8:
            raise OutOfMemory(f"batch size {batch_size} exceeds max_num_seqs=8")
        return super().run_round(workload, strategy, batch_size)
"""


@pytest.mark.parametrize("sizing", ["", "min_waves = 4\n"], ids=["fixed-size", "min_waves"])
def test_sweep_records_max_batch_size_past_an_oom(sim_project, sizing):
    """With min_waves (the GPU profiles) every batch size runs its own number of
    requests; the cases are still one sweep."""
    import json

    p = sim_project(noise=0.0)
    p.makepyfile(limited_engine=LIMITED_ENGINE)
    p.makefile(
        ".toml",
        pyproject="[tool.batchperf.profiles.lim]\nengine = "
        '"limited_engine:LimitedEngine"\nisolate = false\nnoise = 0.0\n' + sizing,
    )
    result = p.runpytest(
        "-p",
        "no:cacheprovider",
        "--batchperf-profile",
        "lim",
        "--batchperf-batch-sizes",
        "2,8,16,32",
        "--benchmark-disable",
        "-rs",
        "--batchperf-report",
        str(p.path / "out"),
    )
    result.assert_outcomes(passed=4, skipped=4)
    result.stdout.fnmatch_lines(["*Max batch size: 8 (the next*", "*batch size 16 does not fit*"])
    cases = json.loads((p.path / "out" / "results.json").read_text())["cases"]
    limits = {
        cid: c["metrics"]["max_batch_size"]["rounds"]
        for cid, c in cases.items()
        if "max_batch_size" in c["metrics"]
    }
    assert sorted(limits) == [
        "test_suite.py::test_sweep[B8-continuous]",
        "test_suite.py::test_sweep[B8-static]",
    ]
    assert all(v == [[8]] for v in limits.values())
    assert "| 8 |" in (p.path / "out" / "summary.md").read_text()
    sizes = {c["params"]["workload"]["num_requests"] for c in cases.values() if c["metrics"]}
    assert len(sizes) == (2 if sizing else 1)


def test_gpu_noise_warnings_from_nvml_readings(monkeypatch):
    """Throttling warns only when the clock is below its maximum (NVML sets sw_power_cap
    at the maximum too: seen on an H100); another process on the GPU always warns. NVML
    readings are stand-ins here."""
    from pytest_batchperf.measure import nvml
    from pytest_batchperf.measure.runner import gpu_warnings

    engine = NS(device="cuda", pids=lambda: [])
    others: list[int] = []
    monkeypatch.setattr(nvml, "available", lambda: True)
    monkeypatch.setattr(nvml, "other_processes", lambda pids, gpus: others)
    for sm, expected in (
        (1980, []),
        (1890, ["GPU clocks throttled (sw_power_cap): SM at 1890 of 1980 MHz"]),
    ):
        state = nvml.ClockState(sm, 1980, ("sw_power_cap",))
        monkeypatch.setattr(nvml, "clock_state", lambda index, state=state: state)
        assert gpu_warnings(engine, (0,)) == expected
    others.append(99)
    assert gpu_warnings(engine, (0,))[-1] == "other processes use the GPU (pids 99)"
    assert gpu_warnings(engine, ()) == []  # a CPU engine uses no GPU


def test_gpu_spin_calibration_takes_the_loaded_clock(monkeypatch):
    """torch.cuda._sleep counts SM cycles: calibrated while the clock ramps up from idle,
    every later spin would be too short. A stand-in torch whose clock starts at 40 % of
    its loaded rate and ramps with work (as seen on an H100) must calibrate to the loaded
    rate."""
    import sys
    import types

    from pytest_batchperf.engines import vllm_slowdown

    loaded_hz, clock = 1.98e9, {"hz": 0.4 * 1.98e9, "now": 0.0}

    def sleep(cycles):
        clock["now"] += cycles / clock["hz"]
        clock["hz"] = min(loaded_hz, clock["hz"] * 2.0)  # the clock rises under load

    class Event:
        def __init__(self, enable_timing):
            self.t = None

        def record(self):
            self.t = clock["now"]

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return (other.t - self.t) * 1e3

    cuda = types.SimpleNamespace(_sleep=sleep, Event=Event, synchronize=lambda: None)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert vllm_slowdown._calibrate() == pytest.approx(loaded_hz)
