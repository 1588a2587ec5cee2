"""The gate on simulated noise (single save jobs; tests/unit/test_gate_simulation.py has the
nested model with saved jobs and the power targets): machine-level shifts, process offsets shared by every
case of a run, per-case process noise and round noise, as on a real runner. The whole-run
false-alarm rate must stay at its nominal level, and real shifts must be caught."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_batchperf.judge import gate, stats
from pytest_batchperf.judge.decision import Verdict
from pytest_batchperf.judge.results import CaseResult, MetricRuns

METRICS = ("output_tok_s", "ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50", "itl_ms_p99")
CASES = 30


def job(
    rng,
    runs: int,
    shift: float,
    machine_sd: float,
    process_sd: float,
    round_sd: float = 0.02,
    rounds: int = 5,
) -> dict[str, dict[str, MetricRuns]]:
    """One CI job: ``runs`` fresh engine processes measuring every case; a slowdown of
    ``shift`` makes every case that much slower."""
    machine = rng.normal(0, machine_sd)
    process = rng.normal(0, process_sd, size=runs)  # one offset per process, all cases
    out = {}
    for c in range(CASES):
        metrics = {}
        for name in METRICS:
            sign = 1 if name == "output_tok_s" else -1  # slower: fewer tok/s, more ms
            level = math.log(50 + 7 * c)
            per_run = [
                level
                + sign * (machine + process[k] + rng.normal(0, process_sd / 3) + math.log1p(-shift))
                for k in range(runs)
            ]
            metrics[name] = MetricRuns.build(
                name, [tuple(np.exp(v + rng.normal(0, round_sd, rounds))) for v in per_run]
            )
        out[f"case{c}"] = metrics
    return out


def judged(
    rng,
    alpha: float,
    baseline_runs: int,
    runs: int,
    shift: float,
    machine_sd: float = 0.02,
    process_sd: float = 0.04,
) -> list[Verdict]:
    base = job(rng, baseline_runs, 0.0, machine_sd, process_sd)
    cand = job(rng, runs, shift, machine_sd, process_sd)
    fitted = gate.priors(CaseResult(cid, metrics=m) for cid, m in base.items())
    policy = gate.GatePolicy(alpha=alpha, cases=CASES)
    return [
        gate.judge_case(CaseResult(cid, metrics=cand[cid]), base[cid], policy, fitted).verdict
        for cid in cand
    ]


@pytest.mark.parametrize("baseline_runs, runs", [(5, 1), (3, 1), (5, 3)])
def test_a_a_false_alarms_per_run_stay_at_the_nominal_level(baseline_runs, runs):
    rng = np.random.default_rng(7)
    alpha, n = 0.05, 200
    failed = sum(
        any(v is Verdict.REGRESSED for v in judged(rng, alpha, baseline_runs, runs, 0.0))
        for _ in range(n)
    )
    # Bonferroni and the tolerance make the rule conservative; 3 binomial SDs of slack.
    assert failed / n <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / n)


def test_paired_a_b_on_drifting_machine():
    """A/B pairs measured back to back cancel the machine's drift, which is far larger than
    the change: a 10 % slowdown is caught although jobs move +-20 % (A/B's own tolerance)."""
    rng = np.random.default_rng(5)
    caught = 0
    for _ in range(40):
        policy = gate.GatePolicy(alpha=0.01, cases=1, paired=True)
        drift = rng.normal(0, 0.2, size=6)  # each pair on a differently loaded machine
        ref = [(float(np.exp(5 + d + rng.normal(0, 0.02))),) for d in drift]
        cand = [(float(np.exp(5 + d + math.log(0.9) + rng.normal(0, 0.02))),) for d in drift]
        r = {"output_tok_s": MetricRuns.build("output_tok_s", ref)}
        c = {"output_tok_s": MetricRuns.build("output_tok_s", cand)}
        caught += (
            gate.judge_case(CaseResult("x", metrics=c), r, policy, paired=True).verdict
            is Verdict.REGRESSED
        )
    assert caught >= 36


def test_fit_prior_recovers_a_common_variance():
    rng = np.random.default_rng(1)
    variances = [float(np.var(rng.normal(0, 0.05, 5), ddof=1)) for _ in range(200)]
    prior = stats.fit_prior(variances, [4] * 200)
    assert prior is not None and prior.s2 == pytest.approx(0.0025, rel=0.2)
    assert prior.df >= 50  # homogeneous variances: the prior is worth many runs


def test_fit_prior_widens_for_heterogeneous_cases_and_needs_three():
    rng = np.random.default_rng(2)
    sds = rng.choice([0.01, 0.1], size=100)
    variances = [float(np.var(rng.normal(0, sd, 5), ddof=1)) for sd in sds]
    prior = stats.fit_prior(variances, [4] * 100)
    assert prior is not None and prior.df < 10
    assert stats.fit_prior([0.1, 0.2], [4, 4]) is None


def test_the_prior_only_ever_widens():
    prior = stats.Prior(s2=0.01, df=20)
    assert stats.moderate(0.0001, 4, prior)[0] > 0.0001  # a lucky-quiet case is pulled up
    assert stats.moderate(0.1, 4, prior) == (0.1, 4)  # a noisy case keeps its own
    assert stats.moderate(None, 0, prior) == (0.01, 20)  # no runs of its own: the prior
    assert stats.moderate(None, 0, None) is None


def test_detectable_change_shrinks_with_baseline_runs_not_with_one_jobs_runs():
    """The candidate job counts once: its runs share the machine's phase."""
    prior = stats.Prior(s2=0.04**2, df=100)
    mdc = {
        (k, m): stats.detectable(stats.prediction([0.0] * k, [0.0] * m, prior), 1e-4, 0.8)
        for k, m in ((3, 1), (5, 1), (5, 3), (10, 1))
    }
    assert mdc[3, 1] > mdc[5, 1] > mdc[10, 1]
    assert mdc[5, 3] == mdc[5, 1]
