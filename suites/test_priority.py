"""Two priority classes under load: does the engine serve the high class first?

Requests alternate between priority 0 (high) and 1 (low) and arrive at twice the
engine's saturation rate at its batch of 8, so a queue forms and the scheduler must choose.
The queue must form in the engine, not in this client: the client keeps up to 32 requests
in flight, so the profile caps the engine's own batch at 8 (``--max-num-seqs 8`` for vllm
serve, ``max_num_seqs = 8`` for vllm); with no cap, all run at once and no class is
preferred. The case records TTFT per class (ttft_ms_p50_prio0 ... ttft_ms_p95_prio1,
judged like any metric) and checks that the high class is served first. Only engines that
take a request priority run it (e.g. vllm with scheduling_policy = "priority"; openai-http
with priority = true against ``vllm serve --scheduling-policy priority``); others skip.

Where the baseline has the case, it offers the baseline's rate, not a freshly calibrated
one, so that the gate compares the same load.
"""

import pytest

from pytest_batchperf.measure.offered_load import at_rate

from .workloads import PRIORITY, Calibrated, offered_rate

BATCH = 8  # the engine's own batch: saturation is calibrated at it
CLIENT = 32  # requests the client keeps in flight, so that the engine holds the queue
STRATEGY = "continuous"
OVERLOAD = 2.0


@pytest.fixture(scope="module")
def calibration(batchperf_engine):
    if not batchperf_engine.supports("priority"):
        pytest.skip(f"engine {batchperf_engine.name!r} does not take a request priority")
    return Calibrated(batchperf_engine, PRIORITY, STRATEGY, BATCH, "the priority case")


@pytest.mark.batchperf(rounds=3)
def test_priority(batchperf, calibration, record_property):
    rate, source = offered_rate(batchperf, calibration, OVERLOAD)
    record_property("batchperf.offered_rate_req_s", f"{rate:g}")
    record_property("batchperf.offered_rate_source", source)
    wl = at_rate(PRIORITY, rate)
    case = batchperf.run(wl, STRATEGY, CLIENT)
    high, low = case.metrics["ttft_ms_p50_prio0"].median, case.metrics["ttft_ms_p50_prio1"].median
    assert high < low, (
        f"the high-priority class waited longer: TTFT p50 {high:.1f} vs {low:.1f} ms "
        f"(is the engine's batch capped below the client's {CLIENT} in flight?)"
    )
