"""Measuring one case: warm-up and measured rounds of a workload under a strategy.

Rounds run through pytest-benchmark's ``pedantic`` when a benchmark fixture is given,
so its ``--benchmark-json`` and compare tools see every case; each round's metrics
come from the engine's request traces, not from pytest-benchmark's wall clock.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import nvml
from .engines.base import Engine, RoundTrace
from .metrics import SLO, round_metrics
from .results import CaseResult, MetricSamples
from .sampling import ResourceSampler
from .strategies import Strategy
from .workload import WorkloadSpec, build

# A round-to-round spread (coefficient of variation) above this makes a gate blind.
NOISY_CV = 0.10
# Warm-up goes on until two warm-up rounds in a row take times within this fraction of
# each other (caches, thread pools and allocators settled), at most this many extra rounds.
WARMUP_STABLE = 0.10
WARMUP_EXTRA_MAX = 3


@dataclass(frozen=True)
class CaseSpec:
    workload: WorkloadSpec
    strategy: Strategy
    batch_size: int
    slo: SLO = SLO()
    rounds: int = 5
    warmup: int = 1

    def params(self) -> dict[str, Any]:
        p = {
            "strategy": self.strategy.value,
            "batch_size": self.batch_size,
            "workload": self.workload.to_dict(),
            "workload_key": self.workload.key(),
        }
        if self.slo.set:
            p["slo"] = {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms}
        return p


@dataclass
class Measurement:
    metrics: dict[str, list[float]] = field(default_factory=dict)
    traces: list[RoundTrace] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def noise_warnings(samples: dict[str, list[float]], keys=("output_tok_s",)) -> list[str]:
    out = []
    for key in keys:
        values = np.asarray(samples.get(key, ()), dtype=float)
        if len(values) >= 3 and values.mean() > 0:
            cv = values.std(ddof=1) / values.mean()
            if cv > NOISY_CV:
                out.append(
                    f"{key} varies {cv:.0%} round to round (> {NOISY_CV:.0%}): too noisy to "
                    "judge small changes; is something else running?"
                )
    return out


def gpu_warnings(engine: Engine) -> list[str]:
    if not engine.device.startswith("cuda") or not nvml.available():
        return []
    out = []
    clock = nvml.clock_state()
    if clock and clock.throttled:
        out.append(f"GPU clocks throttled ({', '.join(clock.throttles)}): SM at "
                   f"{clock.sm_mhz} of {clock.max_sm_mhz} MHz")
    others = nvml.other_processes(set(engine.pids()))
    if others:
        out.append(f"other processes use the GPU (pids {', '.join(map(str, others[:5]))})")
    return out


def warm_up(engine: Engine, workload, spec: CaseSpec) -> list[str]:
    """At least ``spec.warmup`` rounds, then more until the last two agree (see
    WARMUP_STABLE); ``warmup=0`` means none at all. Returns a warning if it never settled."""
    if spec.warmup <= 0:
        return []
    durations: list[float] = []
    for _ in range(spec.warmup + WARMUP_EXTRA_MAX):
        trace = engine.run_round(workload, spec.strategy, spec.batch_size)
        durations.append(trace.end - trace.start)
        if len(durations) >= max(2, spec.warmup) and _settled(durations[-2:]):
            return []
    a, b = durations[-2:]
    return [f"warm-up did not settle in {len(durations)} rounds (the last two took "
            f"{a:.3g}s and {b:.3g}s): measured rounds may still include warm-up effects"]


def _settled(pair: list[float]) -> bool:
    a, b = pair
    return abs(b - a) <= WARMUP_STABLE * min(a, b)


def measure(
    engine: Engine,
    spec: CaseSpec,
    run_rounds: Callable[[Callable[[], None], int, int], None] | None = None,
) -> Measurement:
    """Warm up (until stable), then run the measured rounds; ``run_rounds(fn, rounds,
    warmup)`` drives the measured ones (pytest-benchmark's pedantic), else a plain loop."""
    workload = build(spec.workload, engine.vocab_size)
    result = Measurement(warnings=gpu_warnings(engine))
    result.warnings.extend(warm_up(engine, workload, spec))

    def one_round() -> None:
        with ResourceSampler(engine.pids, gpu=engine.device.startswith("cuda")) as sampler:
            trace = engine.run_round(workload, spec.strategy, spec.batch_size)
        m = round_metrics(trace, spec.slo, waves=spec.strategy.waves)
        m.update(sampler.metrics(m["output_tokens"]))
        for key, value in m.items():
            result.metrics.setdefault(key, []).append(value)
        result.traces.append(trace)

    if run_rounds is None:
        for _ in range(spec.rounds):
            one_round()
    else:
        run_rounds(one_round, spec.rounds, 0)
    result.warnings.extend(noise_warnings(result.metrics))
    for w in result.warnings:
        warnings.warn(w, stacklevel=2)
    return result


def to_case(case_id: str, suite: str, spec: CaseSpec, m: Measurement, started: float) -> CaseResult:
    metrics = {
        name: MetricSamples.build(name, values)
        for name, values in m.metrics.items()
        if any(math.isfinite(v) for v in values)
    }
    return CaseResult(case_id=case_id, suite=suite, params=spec.params(), metrics=metrics,
                      warnings=tuple(m.warnings), duration_s=time.monotonic() - started)
