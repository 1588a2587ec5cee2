"""Measuring one run of a case: warm-up rounds, then measured rounds, on one engine process.

Every round's metrics come from the engine's request traces (``measure.metrics``), the
sampler's memory, GPU and energy readings, and the roofline where it applies. The run
also reports what could make its timings suspect (noisy rounds, a warm-up that never
settled, throttled GPU clocks, other processes on the GPU or the CPU).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..device import driver_pinned
from ..workload.spec import CaseSpec, build
from .interference import Interference, InterferenceProbe
from .metrics import round_metrics
from .roofline import Roofline
from .sampling import ResourceSampler
from .trace import RoundTrace

# A round-to-round spread (coefficient of variation) above this makes a gate blind.
NOISY_CV = 0.10
# Warm-up goes on until two warm-up rounds in a row take times within this fraction of
# each other (caches, thread pools and allocators settled), at most this many extra rounds.
WARMUP_STABLE = 0.10
WARMUP_EXTRA_MAX = 3

# An HTTP client (one asyncio process) busier than this share of a core may be what sets
# the pace, not the server it measures.
CLIENT_BOUND_PCT = 80.0

# How often the sampler thread reads memory (and NVML) during a round; 0: at its start and
# end only (no thread wakes up while the engine runs).
SAMPLE_INTERVAL_S = float(os.environ.get("BATCHPERF_SAMPLE_INTERVAL_S", "0.02"))

# run_rounds(one_round, rounds): drives the measured rounds (pytest-benchmark's pedantic).
Driver = Callable[[Callable[[], None], int], None]


@dataclass(frozen=True)
class Rounds:
    rounds: int = 5
    warmup: int = 1


@dataclass
class RunMeasurement:
    """One run of a case: each metric's per-round values, and what to be wary of."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    traces: list[RoundTrace] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interference: Interference | None = None


def noise_warnings(
    samples: dict[str, list[float]], keys: Sequence[str] = ("output_tok_s",)
) -> list[str]:
    out = []
    for key in keys:
        values = [v for v in samples.get(key, ()) if math.isfinite(v)]
        if len(values) >= 3 and (mean := sum(values) / len(values)) > 0:
            cv = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 / mean
            if cv > NOISY_CV:
                out.append(
                    f"{key} varies {cv:.0%} round to round (> {NOISY_CV:.0%}): too noisy "
                    "to judge small changes; is something else running?"
                )
    return out


def client_warnings(samples: dict[str, list[float]]) -> list[str]:
    values = samples.get("client_cpu_pct")
    if not values or (busy := statistics.median(values)) <= CLIENT_BOUND_PCT:
        return []
    return [
        f"the HTTP client used {busy:.0f} % of a core: the client, not the server, may "
        "set the pace (docs/results/vllm-serve.md)"
    ]


def gpu_warnings(engine: Any, gpus: Sequence[int]) -> list[str]:
    from . import nvml

    if not gpus or not nvml.available():
        return []
    out = []
    clock = nvml.clock_state(gpus[0])
    if clock and clock.throttled:
        out.append(
            f"GPU clocks throttled ({', '.join(clock.throttles)}): SM at "
            f"{clock.sm_mhz} of {clock.max_sm_mhz} MHz"
        )
    ours = set(engine.pids())
    try:
        import psutil

        for pid in list(ours):
            ours.update(c.pid for c in psutil.Process(pid).children(recursive=True))
    except Exception:
        pass
    others = nvml.other_processes(ours, gpus)
    if others:
        out.append(f"other processes use the GPU (pids {', '.join(map(str, others[:5]))})")
    return out


def warm_up(engine: Any, workload: Any, case: CaseSpec, warmup: int) -> list[str]:
    """At least ``warmup`` rounds, then more until the last two agree (WARMUP_STABLE);
    ``warmup=0`` means none at all. Returns a warning if it never settled."""
    if warmup <= 0:
        return []
    durations: list[float] = []
    for _ in range(warmup + WARMUP_EXTRA_MAX):
        trace = engine.run_round(workload, case.strategy, case.batch_size)
        durations.append(trace.end - trace.start)
        if len(durations) >= max(2, warmup) and _settled(durations[-2:]):
            return []
    a, b = durations[-2:]
    return [
        f"warm-up did not settle in {len(durations)} rounds (the last two took "
        f"{a:.3g}s and {b:.3g}s): measured rounds may still include warm-up effects"
    ]


def _settled(pair: list[float]) -> bool:
    a, b = pair
    return abs(b - a) <= WARMUP_STABLE * min(a, b)


def mean_context(case: CaseSpec, workload: Any) -> float:
    """Mean tokens a sequence holds while it decodes: its prompt and half its output."""
    reqs = workload.requests
    return sum(r.prompt_len + r.max_output_tokens / 2 for r in reqs) / len(reqs)


def measure_run(
    engine: Any,
    case: CaseSpec,
    rounds: Rounds,
    gpus: Sequence[int] = (),
    drive: Driver | None = None,
    roofline: Roofline | None = None,
) -> RunMeasurement:
    """Warm up (until stable), then run the measured rounds, in ``drive`` if given; the
    measuring thread keeps off the CPUs a pinned engine computes on."""
    spec = getattr(engine, "spec", None)
    job_cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    with driver_pinned(spec.cpus if spec is not None else ()):
        return _measure(engine, case, rounds, gpus, drive, roofline, job_cpus)


def _measure(
    engine: Any,
    case: CaseSpec,
    rounds: Rounds,
    gpus: Sequence[int],
    drive: Driver | None,
    roofline: Roofline | None,
    job_cpus: set[int] | None,
) -> RunMeasurement:
    workload = build(case.workload, engine.vocab_size)
    result = RunMeasurement(warnings=gpu_warnings(engine, gpus))
    result.warnings.extend(warm_up(engine, workload, case, rounds.warmup))
    batch = 1 if case.strategy.value == "sequential" else case.batch_size
    context = mean_context(case, workload)

    def one_round() -> None:
        with ResourceSampler(engine.pids, gpus, interval_s=SAMPLE_INTERVAL_S) as sampler:
            trace = engine.run_round(workload, case.strategy, case.batch_size)
        m = round_metrics(trace, case.slo, waves=case.strategy.waves)
        m.update(sampler.metrics(m["output_tokens"]))
        if roofline is not None and "tpot_ms_p50" in m:
            m["roofline_pct"] = roofline.fraction_pct(m["tpot_ms_p50"], batch, context)
        for key, value in m.items():
            result.metrics.setdefault(key, []).append(value)
        result.traces.append(trace)

    with InterferenceProbe(cpus=job_cpus) as probe:
        if drive is None:
            for _ in range(rounds.rounds):
                one_round()
        else:
            drive(one_round, rounds.rounds)
    result.interference = probe.result
    result.warnings.extend(noise_warnings(result.metrics))
    result.warnings.extend(client_warnings(result.metrics))
    if probe.result is not None:
        result.warnings.extend(probe.result.warnings())
    return result
