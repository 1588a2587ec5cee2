"""Two priority classes under load: does the engine serve the high class first?

Requests alternate between priority 0 (high) and 1 (low) and arrive at twice the
engine's saturation rate, so a queue forms and the scheduler must choose. The case
records TTFT per class (ttft_ms_p95_prio0, ttft_ms_p95_prio1). Only engines that take a
request priority run it (e.g. vllm with scheduling_policy = "priority"; openai-http with
priority = true against ``vllm serve --scheduling-policy priority``); others skip.

Where the baseline has the case, it offers the baseline's rate, not a freshly calibrated
one, so that the gate compares the same load.
"""

import pytest

from pytest_batchperf.load import at_rate

from workloads import PRIORITY, Calibrated, offered_rate

BATCH = 8
STRATEGY = "continuous"
OVERLOAD = 2.0


@pytest.fixture(scope="module")
def calibration(engine, batchperf_session):
    if not engine.supports("priority"):
        pytest.skip(f"engine {engine.name!r} does not take a request priority")
    return Calibrated(engine, batchperf_session.profile, PRIORITY, STRATEGY, BATCH,
                      "the priority case")


@pytest.mark.batchperf(rounds=3)
def test_priority(batchperf, calibration, record_property):
    rate, source = offered_rate(batchperf, calibration, OVERLOAD)
    record_property("batchperf.offered_rate_req_s", f"{rate:g}")
    record_property("batchperf.offered_rate_source", source)
    wl = at_rate(PRIORITY, rate)
    case = batchperf.run(wl, STRATEGY, BATCH)
    assert {"ttft_ms_p95_prio0", "ttft_ms_p95_prio1"} <= set(case.metrics)
