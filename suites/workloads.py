"""The workloads the suites share: seeded, so baselines stay comparable."""

import functools

import pytest

from pytest_batchperf.engines import EngineError, EngineUnavailable
from pytest_batchperf.measure.offered_load import calibrate
from pytest_batchperf.workload import SLO, WorkloadSpec, fixed, lognormal, uniform

# Fixed lengths: the batch-size sweep measures batching, not length variance.
SWEEP = WorkloadSpec(name="sweep", num_requests=64, prompt=fixed(32), output=fixed(64), seed=1)

# Mixed lengths: where static batching pays for padding and bucketing helps.
MIXED = WorkloadSpec(
    name="mixed",
    num_requests=64,
    prompt=lognormal(48, sigma=0.9, low=4, high=384),
    output=uniform(8, 96),
    seed=2,
)

# Latency under load: short requests, so that a sweep of arrival rates stays quick on a
# CPU; the rate is set per case (a multiple of the engine's measured saturation rate).
LOAD = WorkloadSpec(name="load", num_requests=12, prompt=fixed(32), output=fixed(16), seed=3)

# Prefix sharing: one 192-token system prompt shared by every request, against
# the same prompt lengths with nothing shared.
PREFIX_SHARED = WorkloadSpec(
    name="prefix-shared",
    num_requests=16,
    prompt=fixed(16),
    output=fixed(8),
    shared_prefix_tokens=192,
    prefix_groups=1,
    seed=4,
)
PREFIX_DISTINCT = WorkloadSpec(
    name="prefix-distinct", num_requests=16, prompt=fixed(208), output=fixed(8), seed=4
)

# Two priority classes (0 = high, 1 = low), alternating; the rate is set per case.
PRIORITY = WorkloadSpec(
    name="priority", num_requests=24, prompt=fixed(32), output=fixed(16), priority_classes=2, seed=5
)


def output_tokens(case, spec) -> int:
    """Output tokens a round of ``spec`` must produce, at the size the profile ran it."""
    return case.spec.workload.num_requests * spec.output.value


class Calibrated:
    """The engine's measured saturation on ``spec`` (sized as the profile runs it), measured
    on first use only: a rerun whose baseline supplies every rate and SLO never pays for
    it. Skips where the engine cannot run it."""

    def __init__(self, engine, spec, strategy, batch_size, what: str):
        self._args = (engine, engine.sized(spec, batch_size), strategy, batch_size)
        self._what = what

    @functools.cached_property
    def _measured(self):
        try:
            return calibrate(*self._args)
        except EngineUnavailable as exc:
            pytest.skip(str(exc))
        except EngineError as exc:
            pytest.fail(f"calibrating {self._what} failed: {exc}", pytrace=False)

    def rate(self, factor: float) -> float:
        return self._measured.rate(factor)

    def slo(self) -> SLO:
        return self._measured.slo()


def offered_rate(batchperf, calibration, factor: float) -> tuple[float, str]:
    """The request rate a load case offers, and where it came from: the reference's rate
    for this case where there is one (the baseline's, or an earlier run's of this session),
    since the gate may only compare latencies under the same load and a fresh calibration
    lands on a different rate every time; else ``factor`` x the saturation calibrated now
    (a first run, a new case). Re-saving keeps the rate; to re-anchor it to a changed
    engine, save into an empty baseline."""
    reference = batchperf.reference_params()
    if reference is not None and reference.workload.arrival.rate:
        return reference.workload.arrival.rate, "reference"
    return calibration.rate(factor), "calibrated"


def goodput_slo(batchperf, calibration) -> SLO:
    """The SLO goodput counts against: the reference's for this case where there is one,
    for the same reason as offered_rate; else the one calibrated now."""
    reference = batchperf.reference_params()
    return reference.slo if reference is not None and reference.slo.set else calibration.slo()
