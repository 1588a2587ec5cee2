"""The A/B suite-wide test (pure, on made-up pairs): a change every case shares is judged
across the cases, where no one case's few pairs can show it."""

from __future__ import annotations

import random
from dataclasses import replace

from pytest_batchperf.judge.decision import Verdict
from pytest_batchperf.judge.gate import GatePolicy, judge_case, suite_effects
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunInfo
from pytest_batchperf.plan import Plan, Side

POLICY = GatePolicy(cases=20, looks=3, paired=True)


def _case(i: int, factor: float, rng: random.Random, pairs: int = 3, cv: float = 0.06):
    """A case whose candidate runs are ``factor`` times slower than its reference's, each
    run off by ``cv`` (process to process, as on a shared 2-core runner)."""

    def runs(scale: float, unit: str) -> tuple[tuple[float, ...], ...]:
        out = []
        for _ in range(pairs):
            x = scale * rng.lognormvariate(0, cv)
            out.append((1000 / x if unit == "1/s" else 10 * x,))
        return tuple(out)

    def side(scale: float) -> dict[str, MetricRuns]:
        return {
            "output_tok_s": MetricRuns("output_tok_s", "1/s", "up", runs(scale, "1/s")),
            "tpot_ms_p50": MetricRuns("tpot_ms_p50", "ms", "down", runs(scale, "ms")),
        }

    cid = f"suites/s.py::t[{i}]"
    case = CaseResult(cid, metrics=side(factor), reference=side(1.0))
    return cid, judge_case(case, case.reference, POLICY, paired=True)


def _cases(factor: float, seed: int, n: int = 20) -> dict[str, CaseResult]:
    rng = random.Random(seed)
    return dict(_case(i, factor, rng) for i in range(n))


def test_a_a_suite_passes():
    for seed in range(20):
        assert all(c.verdict is Verdict.PASS for c in suite_effects(_cases(1.0, seed), POLICY))


def test_a_shared_ten_percent_slowdown_is_caught_across_cases_not_by_one():
    cases = _cases(1.10, seed=3)
    assert not any(c.verdict is Verdict.REGRESSED for c in cases.values())
    effects = {c.metric: c for c in suite_effects(cases, POLICY)}
    tok, tpot = effects["output_tok_s"], effects["tpot_ms_p50"]
    assert tok.verdict is tpot.verdict is Verdict.REGRESSED
    assert tok.change < -0.05 < 0.05 < tpot.change  # beyond the 5 % A/B tolerance
    assert tok.n_current == 20 and tok.detectable is not None and tok.detectable < 0.08


def test_within_tolerance_passes_and_too_few_cases_give_no_suite_verdict():
    assert all(c.verdict is not Verdict.REGRESSED for c in suite_effects(_cases(1.02, 1), POLICY))
    assert suite_effects(_cases(1.5, 1, n=2), POLICY) == ()


def test_errored_cases_and_cases_without_a_reference_are_left_out():
    cases = _cases(1.10, seed=3)
    first = next(iter(cases))
    cases[first] = replace(cases[first], error="engine crashed")
    cases["suites/s.py::new"] = CaseResult("suites/s.py::new")
    assert {c.n_current for c in suite_effects(cases, POLICY)} == {19}


def test_the_suite_tests_take_half_of_the_budget_in_both_modes():
    assert POLICY.case_alpha == POLICY.alpha / 2
    assert replace(POLICY, paired=False).case_alpha == POLICY.alpha / 2
    # four metrics; in case order each tests the narrower of two estimates (across the
    # cases' means, and the pairs pooled within cases) at half its share
    assert all(c.alpha == POLICY.alpha / 2 / 4 / 2 for c in suite_effects(_cases(1.0, 1), POLICY))


def test_one_wild_case_neither_fakes_nor_hides_a_suite_change():
    """A pair a slow phase hit on one side moves its case by 40 %: trimmed away."""
    cases = _cases(1.0, seed=4)
    wild = next(iter(cases))
    ref = cases[wild].reference
    slowed = {n: replace(m, runs=tuple((r[0] * 0.6,) for r in m.runs)) for n, m in ref.items()}
    cases[wild] = replace(cases[wild], metrics=slowed)
    assert all(c.verdict is Verdict.PASS for c in suite_effects(cases, POLICY))


def test_yuens_trimmed_mean_by_hand():
    from pytest_batchperf.judge.stats import trimmed

    est = trimmed([float(x) for x in range(10)] + [1000.0])  # n 11: two cut from each end
    winsorized = [2.0] * 3 + [3.0, 4.0, 5.0, 6.0, 7.0] + [8.0] * 3
    m = sum(winsorized) / 11
    s2 = sum((v - m) ** 2 for v in winsorized) / 10
    assert est is not None and est.delta == 5.0 and est.df == 6
    assert abs(est.se - (s2**0.5) / ((1 - 4 / 11) * 11**0.5)) < 1e-12
    assert trimmed([1.0, 2.0]) is not None and trimmed([1.0]) is None


def _placed(i: int, plan: Plan, first: float, rng: random.Random) -> tuple[str, CaseResult]:
    """An A/A case laid out as ``plan`` says, its first run ``first`` times as fast."""
    sides: dict[Side, list[float]] = {Side.REFERENCE: [], Side.CANDIDATE: []}
    for slot in plan.slots():
        sides[slot.side].append((first if slot.index == 1 else 1.0) * rng.lognormvariate(0, 0.02))

    def metrics(xs: list[float]) -> dict[str, MetricRuns]:
        return {
            "output_tok_s": MetricRuns("output_tok_s", "1/s", "up", tuple((1000 * x,) for x in xs)),
            "tpot_ms_p50": MetricRuns("tpot_ms_p50", "ms", "down", tuple((10 / x,) for x in xs)),
        }

    cid = f"suites/s.py::t[{i}]"
    case = CaseResult(
        cid,
        metrics=metrics(sides[Side.CANDIDATE]),
        reference=metrics(sides[Side.REFERENCE]),
        runs=tuple(RunInfo(s.index, s.side) for s in plan.slots()),
    )
    return cid, judge_case(case, case.reference, replace(POLICY, cases=9), paired=True)


def test_a_place_effect_every_case_shares_is_no_suite_change():
    """Issue #38: the first run of every case 30 % faster, nine cases of three pairs. Where
    every case opens with the reference, each case's mean ratio moves by a third of it and
    the suite test reads an A/A job as a regression; cases that take turns at opening (the
    plan's layout back to back) pass."""
    policy = replace(POLICY, cases=9)
    for seed in range(5):
        rng = random.Random(seed)
        same = dict(_placed(i, Plan(3, ab=True), 1.3, rng) for i in range(9))
        turns = dict(_placed(i, Plan(3, ab=True).counterbalanced(i), 1.3, rng) for i in range(9))
        assert all(c.verdict is Verdict.REGRESSED for c in suite_effects(same, policy))
        assert all(c.verdict is Verdict.PASS for c in suite_effects(turns, policy))


def test_the_pooled_mean_weighs_the_two_openings_alike():
    """Two cases opened by the reference, one by the candidate: an offset of opposite sign
    in the two cancels, where the plain mean of the three keeps a third of it."""
    from pytest_batchperf.judge.stats import pooled_pairs

    groups = [[0.1, 0.12, 0.08], [0.11, 0.09, 0.1], [-0.1, -0.09, -0.11]]
    plain = pooled_pairs(groups)
    strata = pooled_pairs(groups, [Side.REFERENCE, Side.REFERENCE, Side.CANDIDATE])
    assert plain is not None and strata is not None
    assert abs(plain.delta - 0.1 / 3) < 1e-9 and abs(strata.delta) < 1e-9
    assert strata.df == plain.df == 6
    # each case's mean s2 / 3: the plain mean's s2 / 9, the strata's (s2 / 6 + s2 / 3) / 4
    assert abs(strata.se**2 - plain.se**2 * 9 / 8) < 1e-12
