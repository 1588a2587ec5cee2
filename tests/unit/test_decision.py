"""The decision rule on plain numbers: lists of runs, each run its rounds."""

import math

import numpy as np
import pytest

from pytest_batchperf.judge.catalog import METRICS, UnknownMetricError, parse_tolerances
from pytest_batchperf.judge.decision import (
    ONE_RUN_FACTOR,
    Verdict,
    compare,
    log_ratios,
    run_summaries,
    summaries,
    worst,
)
from pytest_batchperf.judge.gate import GatePolicy, judge_case
from pytest_batchperf.judge.results import CaseResult, MetricRuns
from pytest_batchperf.judge.stats import Prior

TOK_S = METRICS["output_tok_s"]  # up is better, 10 %
TTFT = METRICS["ttft_ms_p50"]  # down is better, 15 %


def _samples(center, cv=0.01, n=5, seed=0):
    return list(center * np.random.default_rng(seed).lognormal(0, cv, n))


def _runs(center, cv=0.01, n=5, seed=0):
    """``n`` runs of one round each, their summaries spread by ``cv``."""
    return [[x] for x in _samples(center, cv, n, seed)]


def test_same_distribution_passes():
    c = compare(TOK_S, _runs(1000, seed=1), _runs(1000, seed=2))
    assert c.verdict is Verdict.PASS and abs(c.change) < 0.05


def test_real_slowdown_beyond_tolerance_regresses():
    c = compare(TOK_S, _runs(1000, seed=1), _runs(600, seed=2))
    assert c.verdict is Verdict.REGRESSED
    assert c.change == pytest.approx(-0.4, abs=0.02)
    assert c.p_value < 0.01 and c.ci_high < 0
    assert (c.n_reference, c.n_current) == (5, 5) and c.note == ""
    assert "output_tok_s: 1,002 -> 598 1/s (-40.3%, interval [-42.4%, -38.1%], p=" in c.line()
    assert "5 vs 5 runs; tolerance 10%, detectable 4%, higher is better" in c.line()


def test_runs_are_summarised_by_the_median_of_their_rounds():
    """A run's rounds count once, through their median: an outlier round moves nothing."""
    rounds = [[990.0, 1000.0, 1010.0], [995.0, 1005.0, 5000.0], [1000.0, 1002.0, 1.0]]
    assert run_summaries(rounds) == [1000.0, 1005.0, 1000.0]
    c = compare(TOK_S, rounds, [[x] for x in run_summaries(rounds)])
    assert c.verdict is Verdict.PASS and c.change == pytest.approx(0.0)
    assert (c.n_reference, c.n_current) == (3, 3)


def test_latency_direction_is_down():
    assert compare(TTFT, _runs(10, seed=1), _runs(14, seed=2)).verdict is Verdict.REGRESSED
    assert compare(TTFT, _runs(10, seed=1), _runs(6, seed=2)).verdict is Verdict.IMPROVED


def test_significant_but_within_tolerance_passes():
    # A 5 % drop, measured very precisely: real, but under the 10 % tolerance.
    c = compare(TOK_S, _runs(1000, cv=0.001, seed=1), _runs(950, cv=0.001, seed=2))
    assert c.p_value < 1e-6 and c.verdict is Verdict.PASS


def test_beyond_tolerance_but_noisy_is_inconclusive():
    c = compare(TOK_S, [[1000.0], [1400.0], [700.0]], [[800.0], [1150.0], [560.0]])
    assert c.change < -TOK_S.tolerance
    assert c.verdict is Verdict.INCONCLUSIVE and "noise" in c.note
    # Three runs this noisy cannot see a 10 % change: the comparison says so.
    assert c.detectable > TOK_S.tolerance and c.below_noise


def test_alpha_is_the_tests_share_and_decides():
    """The same evidence regresses at a generous alpha and is inconclusive at a tiny one."""
    ref, cur = [[1000.0], [1100.0], [900.0]], [[600.0], [660.0], [540.0]]
    loose = compare(TOK_S, ref, cur, alpha=0.05)
    tight = compare(TOK_S, ref, cur, alpha=1e-6)
    assert loose.p_value == tight.p_value and 1e-6 < loose.p_value < 0.05
    assert (loose.verdict, tight.verdict) == (Verdict.REGRESSED, Verdict.INCONCLUSIVE)
    assert (loose.alpha, tight.alpha) == (0.05, 1e-6)
    assert tight.ci_low < loose.ci_low and tight.detectable > loose.detectable


def test_few_runs_at_a_tiny_alpha_give_a_wide_interval_not_an_exception():
    """Two runs against one leave one degree of freedom: at a suite's per-test alpha the
    interval's upper end is astronomically far (beyond a float), and still a verdict."""
    c = compare(TOK_S, [[1000.0], [1100.0]], [[1000.0]], alpha=1e-6)
    assert c.verdict is Verdict.PASS and c.p_value > 0.1
    assert c.ci_low is None or c.ci_low >= -1
    assert c.ci_high is None or c.ci_high > 1
    assert c.detectable is None or c.detectable <= 1
    assert c.line()


def test_without_any_test_nothing_regresses_or_improves():
    """One round a side: no noise estimate at all. A verdict on the tolerance alone would
    fail outside the run's alpha budget, so a change beyond it is inconclusive."""
    c = compare(TOK_S, [[1000.0]], [[700.0]])
    assert c.verdict is Verdict.INCONCLUSIVE and c.p_value is None and c.suspected
    assert compare(TOK_S, [[1000.0]], [[850.0]]).verdict is Verdict.INCONCLUSIVE
    assert compare(TOK_S, [[1000.0]], [[1300.0]]).verdict is Verdict.PASS
    assert compare(TOK_S, [[1000.0]], [[1050.0]]).verdict is Verdict.PASS


def test_one_reference_run_is_judged_on_rounds_at_twice_the_tolerance():
    """Rounds of one process understate the noise between processes: Welch's t on them,
    and a change must exceed ONE_RUN_FACTOR x the tolerance to regress."""
    assert ONE_RUN_FACTOR == 2
    ref = [_samples(1000, cv=0.001, seed=1)]
    c = compare(TOK_S, ref, [_samples(850, cv=0.001, seed=2)])
    assert c.p_value < 1e-6 and c.verdict is Verdict.INCONCLUSIVE
    assert "one reference run" in c.note and "2x the tolerance" in c.note
    assert (c.n_reference, c.n_current) == (1, 1)
    c = compare(TOK_S, ref, [_samples(700, cv=0.001, seed=2)])
    assert c.verdict is Verdict.REGRESSED and c.p_value < 1e-6 and "one reference run" in c.note


def test_a_one_run_baseline_judges_every_candidate_run():
    """The first candidate run alone looked fine; the next two were at half speed."""
    ref = [_samples(1000, cv=0.001, seed=1)]
    cand = [_samples(1000, cv=0.001, seed=2), *(_samples(500, cv=0.001, seed=s) for s in (3, 4))]
    assert compare(TOK_S, ref, cand).verdict is Verdict.REGRESSED


def test_a_prior_gives_one_run_a_noise_estimate():
    """With a prior on the between-run variance, one run a side is an ordinary prediction
    test at the plain tolerance."""
    c = compare(TOK_S, [[1000.0]], [[850.0]], prior=Prior(1e-4, 50))
    assert c.verdict is Verdict.REGRESSED and c.p_value < 1e-6 and c.note == ""
    # A prior far noisier than the change: beyond tolerance, without evidence.
    c = compare(TOK_S, [[1000.0]], [[850.0]], prior=Prior(0.25, 50))
    assert c.verdict is Verdict.INCONCLUSIVE


def test_paired_runs_cancel_the_drift_they_share():
    """A/B: run i of each side shares run i's conditions, so a drift common to the pair
    cancels in their ratio; unpaired, the same drift is noise."""
    drift = [1.0, 1.3, 0.8, 1.15, 0.9]
    jitter = [1.0, 0.996, 1.004, 1.002, 0.998]
    ref = [[1000 * d * f for f in (0.99, 1.0, 1.01)] for d in drift]
    cur = [[850 * d * j * f for f in (0.995, 1.0, 1.005)] for d, j in zip(drift, jitter)]
    assert compare(TOK_S, ref, cur).verdict is Verdict.INCONCLUSIVE
    c = compare(TOK_S, ref, cur, paired=True)
    assert c.verdict is Verdict.REGRESSED and c.p_value < 1e-6
    assert (c.n_reference, c.n_current) == (5, 5)
    assert log_ratios(ref, cur) == pytest.approx([math.log(0.85 * j) for j in jitter])


def test_exact_metric_compares_exactly():
    waste = METRICS["padding_waste_pct"]
    assert compare(waste, [[20.0, 20.0]], [[20.0, 20.0]]).verdict is Verdict.PASS
    assert compare(waste, [[20.0], [20.0]], [[25.0], [25.0]]).verdict is Verdict.REGRESSED
    assert compare(waste, [[20.0]], [[10.0]]).verdict is Verdict.IMPROVED
    assert compare(METRICS["max_batch_size"], [[64]], [[32]]).verdict is Verdict.REGRESSED
    # A count read back from a baseline (6 significant digits) is still equal.
    assert compare(METRICS["kv_cache_tokens"], [[123457.0]], [[123456.7]]).verdict is Verdict.PASS


def test_info_metric_never_judged():
    c = compare(METRICS["gpu_util_pct"], [[90.0]] * 3, [[10.0]] * 3)
    assert c.verdict is Verdict.PASS and c.note == "informational"


def test_nan_samples_are_ignored_and_empty_is_inconclusive():
    assert compare(TOK_S, [[float("nan")]], [[1.0]]).verdict is Verdict.INCONCLUSIVE
    assert compare(TOK_S, [], [[1.0]]).verdict is Verdict.INCONCLUSIVE
    # A run without a finite round has no summary; a nan round in a run is left out.
    c = compare(TOK_S, _runs(1000, seed=1) + [[float("nan")]], _runs(1000, seed=2))
    assert c.verdict is Verdict.PASS and c.n_reference == 5
    assert summaries([[1.0, float("nan"), 3.0], [float("nan")]]) == [2.0]


def test_tolerance_override():
    assert compare(TOK_S, _runs(1000), _runs(700, seed=3), tolerance=0.5).verdict is Verdict.PASS


def test_worst_verdict_orders_by_severity():
    assert worst([Verdict.PASS, Verdict.IMPROVED, Verdict.REGRESSED]) is Verdict.REGRESSED
    assert worst([Verdict.PASS, Verdict.INCONCLUSIVE]) is Verdict.INCONCLUSIVE
    assert worst([]) is Verdict.PASS


def test_the_false_alarm_budget_halves_for_the_suite_then_cases_then_looks():
    policy = GatePolicy(alpha=0.01, cases=5, looks=3, planned=5)
    assert policy.case_alpha == 0.005
    shares = [policy.look_share(runs) for runs in (5, 6, 7)]
    # a Pocock-type spending function: most at the planned look, all of it by the last
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] > 0.7 and shares[0] > shares[1] > 0
    assert policy.look_alpha(5) == pytest.approx(0.005 / 5 * shares[0])
    assert GatePolicy(alpha=0.01).look_alpha(1) == 0.005


def test_holm_gives_the_later_families_of_a_significant_case_more_alpha():
    """The smallest p is tested at share/m, the next (if the first was significant) at
    share/(m-1): a case that regressed clearly in throughput tests TPOT at half, not a
    quarter, of its share."""
    slow = {
        "output_tok_s": _runs(600, seed=2),
        "tpot_ms_p50": _runs(11.3, seed=5),
        "ttft_ms_p50": _runs(50, seed=6),
        "e2e_ms_p95": _runs(200, seed=7),
    }
    ref = {
        n: MetricRuns.build(n, _runs(v, seed=1))
        for n, v in (
            ("output_tok_s", 1000),
            ("tpot_ms_p50", 10),
            ("ttft_ms_p50", 50),
            ("e2e_ms_p95", 200),
        )
    }
    case = CaseResult("c", metrics={n: MetricRuns.build(n, r) for n, r in slow.items()})
    judged = judge_case(case, ref, GatePolicy(alpha=0.01, device="cuda"))
    alphas = {c.metric: c.alpha for c in judged.comparisons}
    assert alphas["output_tok_s"] == pytest.approx(0.005 / 4)
    assert alphas["tpot_ms_p50"] == pytest.approx(0.005 / 3)


def test_metrics_outside_the_headline_set_are_shown_and_never_fail():
    ref = {n: MetricRuns.build(n, _runs(10, seed=1)) for n in ("ttft_ms_p99", "tpot_ms_p50")}
    case = CaseResult("c", metrics={n: MetricRuns.build(n, _runs(30, seed=2)) for n in ref})
    judged = judge_case(case, ref, GatePolicy(device="cuda"))
    by = {c.metric: c for c in judged.comparisons}
    assert by["tpot_ms_p50"].verdict is Verdict.REGRESSED and by["tpot_ms_p50"].gated
    assert by["ttft_ms_p99"].verdict is Verdict.PASS and not by["ttft_ms_p99"].gated
    assert by["ttft_ms_p99"].note == "not gated: changed"
    # a chosen set: TTFT p99 fails, TPOT p50 is shown
    judged = judge_case(case, ref, GatePolicy(device="cuda", gate_metrics=("ttft_ms_p99",)))
    by = {c.metric: c for c in judged.comparisons}
    assert by["ttft_ms_p99"].verdict is Verdict.REGRESSED
    assert by["tpot_ms_p50"].verdict is Verdict.PASS


def test_a_metric_family_is_tested_once():
    """Request, output and total throughput are one measurement: one share of alpha."""
    ref = {
        n: MetricRuns.build(n, _runs(1000, seed=1))
        for n in ("throughput_req_s", "output_tok_s", "total_tok_s", "ttft_ms_p50")
    }
    case = CaseResult("c", metrics={n: MetricRuns.build(n, _runs(1000, seed=2)) for n in ref})
    judged = judge_case(case, ref, GatePolicy(alpha=0.01, cases=2))
    # the suite tests' half, then 2 cases, then Holm over 2 families (neither significant)
    assert [c.alpha for c in judged.comparisons] == pytest.approx([0.01 / 2 / 2 / 2] * 4)
    assert judged.verdict is Verdict.PASS


def test_parse_tolerances():
    assert parse_tolerances(["output_tok_s=5", "*=20%"]) == {"output_tok_s": 0.05, "*": 0.2}
    with pytest.raises(UnknownMetricError, match="unknown metric 'tok_s'"):
        parse_tolerances(["tok_s=5"])
    with pytest.raises(ValueError, match="not METRIC=PCT"):
        parse_tolerances(["output_tok_s"])
    with pytest.raises(ValueError, match="not a number"):
        parse_tolerances(["output_tok_s=fast"])


GOODPUT = METRICS["goodput_req_s"]  # zero when no request meets the SLO


def test_zero_goodput_is_judged_against_the_runs_spread():
    """Goodput may be zero, where logs do not exist: the runs themselves are tested, so a
    baseline whose runs already reached zero does not fail a zero, and a steady one does."""
    spread = compare(GOODPUT, [[148], [149], [0], [0], [0]], [[0]], alpha=0.01)
    assert spread.verdict is Verdict.INCONCLUSIVE and spread.p_value > 0.01
    steady = compare(GOODPUT, [[170], [171], [169], [170], [172]], [[40]], alpha=0.01)
    assert steady.verdict is Verdict.REGRESSED
    assert steady.ci_high is not None and -0.8 < steady.ci_high < 0
    same = compare(GOODPUT, [[0], [0], [0]], [[0]])
    assert same.verdict is Verdict.PASS


def test_zero_goodput_pairs_are_judged_on_their_differences():
    pairs = compare(GOODPUT, [[150], [0], [151], [0]], [[0], [149], [0], [152]], paired=True)
    assert pairs.verdict is not Verdict.REGRESSED
    drop = compare(GOODPUT, [[150], [149], [151], [150]], [[90], [91], [89], [90]], paired=True)
    assert drop.verdict is Verdict.REGRESSED and drop.change == pytest.approx(-0.4, abs=0.01)


def test_two_pairs_of_a_3x_slowdown_regress_with_the_machine_kinds_prior():
    """Two pairs give each case one df; a prior fitted from four such cases rests on no
    more, so the machine kind's stands in. Pairs that disagree far beyond it (recorded H100
    eager pairs at B8: -72 % and -63 %) keep their own variance: suspected, with the runs
    that would decide it."""
    policy = GatePolicy(cases=4, paired=True, device="cuda")
    few = {"output_tok_s": Prior(0.04, 2.0)}

    def judged(cur):
        ref = MetricRuns.build("output_tok_s", [(1082.0,), (1091.0,)])
        cur = MetricRuns.build("output_tok_s", [(x,) for x in cur])
        metrics = {"output_tok_s": cur}
        case = CaseResult("b8", metrics=metrics)
        return judge_case(case, {"output_tok_s": ref}, policy, few, paired=True)

    assert judged([330.0, 370.0]).verdict is Verdict.REGRESSED
    noisy = judged([305.0, 402.0]).comparisons[0]
    assert noisy.verdict is Verdict.INCONCLUSIVE and noisy.suspected
    assert noisy.runs_needed is not None and noisy.runs_needed <= 10


def test_runs_needed_counts_the_degrees_of_freedom_more_runs_bring():
    from pytest_batchperf.judge.stats import Estimate

    est = Estimate(delta=-1.1, se=0.144, df=1, n_reference=2, n_candidate=2, per_run=0.0416)
    needed = est.runs_for(1.1, 1e-4)
    assert needed is not None and 3 <= needed <= 10


def test_an_unknown_gate_metric_is_one_clear_error():
    from pytest_batchperf.options import _gate_metrics

    assert _gate_metrics("throughput, tpot_ms_p50") == ("throughput", "tpot_ms_p50")
    with pytest.raises(ValueError, match="unknown metric tok_s"):
        _gate_metrics("tok_s")
