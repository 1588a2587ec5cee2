"""Offered load relative to what an engine sustains: the basis of the latency-under-load
and priority suites.

Absolute request rates do not travel between a laptop CPU and an H100, so the load
suites first measure the engine's saturation rate (requests/s with every request queued
at t0) and its unloaded latencies (requests sent one at a time), then offer Poisson load
at multiples of that rate. The SLO that goodput counts against is relative too: a
request is good when its TTFT and TPOT stay within a few times their unloaded values.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from ..workload.spec import SLO, Arrival, CaseSpec, WorkloadSpec
from ..workload.strategies import Strategy
from .runner import Rounds, measure_run

# Goodput counts a request as good within these multiples of its unloaded latencies.
SLO_TTFT_X = 5.0
SLO_TPOT_X = 3.0


@dataclass(frozen=True)
class Calibration:
    saturation_req_s: float  # completed requests/s with every request queued at t0
    unloaded_ttft_ms: float  # TTFT p50 with one request at a time
    unloaded_tpot_ms: float  # TPOT p50 with one request at a time

    def rate(self, factor: float) -> float:
        """``factor`` x saturation, rounded to 2 significant digits so that run-to-run
        noise in the calibration rarely changes the workload."""
        return float(f"{factor * self.saturation_req_s:.2g}")

    def slo(self) -> SLO:
        return SLO(
            ttft_ms=float(f"{SLO_TTFT_X * self.unloaded_ttft_ms:.2g}"),
            tpot_ms=float(f"{SLO_TPOT_X * self.unloaded_tpot_ms:.2g}"),
        )


def at_rate(spec: WorkloadSpec, rate: float, burstiness: float = 1.0) -> WorkloadSpec:
    """``spec`` with Poisson arrivals at ``rate`` req/s (gamma when burstiness != 1)."""
    kind = "poisson" if burstiness == 1.0 else "gamma"
    return replace(
        spec,
        arrival=Arrival(kind, rate=rate, burstiness=burstiness),
        name=f"{spec.name}@{rate:g}/s",
    )


def calibrate(
    engine: Any, spec: WorkloadSpec, strategy: Strategy | str, batch_size: int
) -> Calibration:
    """Measure saturation (burst rounds of ``spec``) and unloaded latency (a few of its
    requests, sequentially). Raises EngineError like any round."""
    # Warm-up until stable, then the median of 3 rounds: one cold round can come out many
    # times slower than a warm one, and the rates it sets are kept in the baseline.
    three = Rounds(rounds=3, warmup=1)
    burst = measure_run(
        engine,
        CaseSpec(replace(spec, arrival=Arrival()), Strategy.parse(strategy), batch_size),
        three,
    )
    alone = replace(spec, arrival=Arrival(), num_requests=min(4, spec.num_requests))
    single = measure_run(engine, CaseSpec(alone, Strategy.SEQUENTIAL, 1), three)

    # From when each request was taken, not when it was due: queueing behind the
    # earlier ones is exactly what "unloaded" leaves out.
    ttft = [
        (r.first_token - r.scheduled) * 1e3
        for t in single.traces
        for r in t.requests
        if r.first_token is not None and r.scheduled is not None
    ]
    return Calibration(
        saturation_req_s=statistics.median(burst.metrics["throughput_req_s"]),
        unloaded_ttft_ms=statistics.median(ttft),
        unloaded_tpot_ms=statistics.median(single.metrics["tpot_ms_p50"]),
    )
