"""Latency under load: TTFT, TPOT and end-to-end percentiles and goodput as the offered
request rate rises from well below the engine's saturation rate to well above it.

The saturation rate is measured first (every request queued at t0: ``test_saturation``'s
throughput_req_s); the sweep then offers Poisson load at multiples of it. Below
saturation TTFT stays near its unloaded value; above it requests queue and TTFT grows.
Goodput counts requests whose TTFT and TPOT stay within a few times their unloaded
values (pytest_batchperf.load). Engines that cannot batch continuously skip.
"""

import pytest

from pytest_batchperf.load import at_rate

from workloads import LOAD, calibrated

BATCH = 8
STRATEGY = "continuous"
LOAD_FACTORS = [0.25, 0.5, 1.0, 4.0]


@pytest.fixture(scope="module")
def calibration(engine):
    return calibrated(engine, LOAD, STRATEGY, BATCH, "the load sweep")


def test_saturation(batchperf, calibration, record_property):
    case = batchperf.run(LOAD, STRATEGY, BATCH)
    record_property("batchperf.saturation_req_s", f"{case.metrics['throughput_req_s'].median:.4g}")
    assert case.metrics["output_tokens"].median == LOAD.num_requests * LOAD.output.value


@pytest.mark.batchperf(rounds=3)
@pytest.mark.parametrize("load", LOAD_FACTORS, ids=[f"{f:g}x" for f in LOAD_FACTORS])
def test_latency_under_load(batchperf, calibration, load, record_property):
    rate = calibration.rate(load)
    record_property("batchperf.offered_rate_req_s", f"{rate:g}")
    case = batchperf.run(at_rate(LOAD, rate), STRATEGY, BATCH, slo=calibration.slo())
    assert case.metrics["output_tokens"].median == LOAD.num_requests * LOAD.output.value
    assert "goodput_req_s" in case.metrics
