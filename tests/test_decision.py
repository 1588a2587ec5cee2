"""The decision rule on plain numbers."""

import numpy as np
import pytest

from pytest_batchperf.catalog import METRICS, parse_tolerances, UnknownMetricError
from pytest_batchperf.decision import Verdict, compare, worst

TOK_S = METRICS["output_tok_s"]  # up is better, 10 %
TTFT = METRICS["ttft_ms_p50"]  # down is better, 15 %


def _samples(center, cv=0.01, n=5, seed=0):
    return list(center * np.random.default_rng(seed).lognormal(0, cv, n))


def test_same_distribution_passes():
    c = compare(TOK_S, _samples(1000, seed=1), _samples(1000, seed=2))
    assert c.verdict is Verdict.PASS and abs(c.change) < 0.05


def test_real_slowdown_beyond_tolerance_regresses():
    c = compare(TOK_S, _samples(1000, seed=1), _samples(600, seed=2))
    assert c.verdict is Verdict.REGRESSED
    assert c.change == pytest.approx(-0.4, abs=0.02)
    assert c.p_value < 0.01 and c.ci_high < 0
    assert "output_tok_s: 1,003 -> 598 1/s (-40.5%, 99% CI [-42.0%, -38.6%]" in c.line()
    assert "tolerance 10%, higher is better" in c.line()


def test_latency_direction_is_down():
    assert compare(TTFT, _samples(10, seed=1), _samples(14, seed=2)).verdict is Verdict.REGRESSED
    assert compare(TTFT, _samples(10, seed=1), _samples(6, seed=2)).verdict is Verdict.IMPROVED


def test_significant_but_within_tolerance_passes():
    # A 5 % drop, measured very precisely: real, but under the 10 % tolerance.
    c = compare(TOK_S, _samples(1000, cv=0.001, seed=1), _samples(950, cv=0.001, seed=2))
    assert c.p_value < 1e-6 and c.verdict is Verdict.PASS


def test_beyond_tolerance_but_noisy_is_inconclusive():
    c = compare(TOK_S, _samples(1000, cv=0.4, n=3, seed=1), _samples(800, cv=0.4, n=3, seed=5))
    assert c.verdict is Verdict.INCONCLUSIVE and "noise" in c.note


def test_single_round_falls_back_to_tolerance():
    c = compare(TOK_S, [1000.0], [700.0])
    assert c.verdict is Verdict.REGRESSED and c.p_value is None and "too few rounds" in c.note


def test_exact_metric_compares_exactly():
    waste = METRICS["padding_waste_pct"]
    assert compare(waste, [20.0, 20.0], [20.0, 20.0]).verdict is Verdict.PASS
    assert compare(waste, [20.0, 20.0], [25.0, 25.0]).verdict is Verdict.REGRESSED
    assert compare(waste, [20.0], [10.0]).verdict is Verdict.IMPROVED
    assert compare(METRICS["max_batch_size"], [64], [32]).verdict is Verdict.REGRESSED


def test_info_metric_never_judged():
    assert compare(METRICS["gpu_util_pct"], [90.0] * 3, [10.0] * 3).verdict is Verdict.PASS


def test_nan_samples_are_ignored_and_empty_is_inconclusive():
    assert compare(TOK_S, [float("nan")], [1.0]).verdict is Verdict.INCONCLUSIVE
    c = compare(TOK_S, _samples(1000, seed=1) + [float("nan")], _samples(1000, seed=2))
    assert c.verdict is Verdict.PASS and c.n_baseline == 5


def test_tolerance_override():
    assert compare(TOK_S, _samples(1000), _samples(700, seed=3), tolerance=0.5).verdict is Verdict.PASS


def test_worst_verdict_orders_by_severity():
    assert worst([Verdict.PASS, Verdict.IMPROVED, Verdict.REGRESSED]) is Verdict.REGRESSED
    assert worst([Verdict.PASS, Verdict.INCONCLUSIVE]) is Verdict.INCONCLUSIVE
    assert worst([]) is Verdict.PASS


def test_parse_tolerances():
    assert parse_tolerances(["output_tok_s=5", "*=20%"]) == {"output_tok_s": 0.05, "*": 0.2}
    with pytest.raises(UnknownMetricError, match="unknown metric 'tok_s'"):
        parse_tolerances(["tok_s=5"])
    with pytest.raises(ValueError, match="not METRIC=PCT"):
        parse_tolerances(["output_tok_s"])
    with pytest.raises(ValueError, match="not a number"):
        parse_tolerances(["output_tok_s=fast"])
