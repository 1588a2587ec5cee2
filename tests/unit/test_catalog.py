"""Every metric an engine run emits is in the catalog, and families group what is one test."""

from pytest_batchperf.judge.catalog import METRICS, lookup, spec
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.measure.sampling import ResourceSampler
from pytest_batchperf.measure.trace import RequestTrace, RoundTrace
from pytest_batchperf.workload.spec import SLO


def _trace():
    reqs = []
    for i in range(4):
        r = RequestTrace(i, 8, arrival=0.0, scheduled=0.0, priority=i % 2)
        r.token_times = [0.1 * (i + 1) + 0.01 * k for k in range(5)]
        r.finished = r.token_times[-1]
        reqs.append(r)
    # what the vLLM engine reports per round
    return RoundTrace(0.0, 1.0, reqs, stats={"preemptions": 0.0, "prefix_cache_hit_pct": 50.0})


def test_every_emitted_metric_is_in_the_catalog():
    emitted = set(round_metrics(_trace(), SLO(100, 100), waves=True))
    sampler = ResourceSampler(lambda: [], gpus=())
    with sampler:
        pass
    emitted |= set(sampler.metrics(10.0))
    # the sampler's GPU readings, the roofline and the capacity metric the session adds
    emitted |= {
        "peak_gpu_mem_mib",
        "gpu_util_pct",
        "sm_clock_mhz",
        "energy_j_per_tok",
        "roofline_pct",
        "max_batch_size",
    }
    missing = sorted(name for name in emitted if lookup(name) is None)
    assert not missing, f"metrics emitted but not in the catalog: {missing}"


def test_priority_metrics_are_judged_per_class():
    m = spec("ttft_ms_p95_prio1")
    assert m.judged and m.unit == "ms" and m.family == "ttft_ms_p95_prio1"
    assert lookup("ttft_ms_p42_prio1") is None


def test_throughput_metrics_are_one_family():
    assert {METRICS[n].family for n in ("throughput_req_s", "output_tok_s", "total_tok_s")} == {
        "throughput"
    }
    assert METRICS["ttft_ms_p50"].family != METRICS["e2e_ms_p50"].family


def test_ab_tolerances_are_tighter():
    for m in METRICS.values():
        assert m.ab_tolerance <= m.tolerance
    assert METRICS["tpot_ms_p50"].ab_tolerance == 0.05
