"""The gate's calm and power on one simulated model (tests/gate_sim.py), measured on the
same runs: whole-run false alarms consistent with the nominal alpha (1 %) in both modes and
orders, and the detection the gate exists for. Seeded, so each rate is one fixed number;
docs/gate.md has the curves from more trials (scripts/gate_power.py)."""

from __future__ import annotations

import math

import pytest
from gate_sim import Design, Noise, ab, committed, judge_committed, rate

TRIALS = 120
ALPHA = 0.01  # the nominal false-alarm rate per run of the whole suite
SHIFT = math.log(1.25)


def calm(rate: float, trials: int = TRIALS) -> bool:
    """The false alarms are no more than a true 1 % would give in 19 of 20 campaigns
    (one-sided binomial test): at 120 trials, up to 3."""
    from scipy.stats import binom

    return bool(binom.sf(round(rate * trials) - 1, trials, ALPHA) > 0.05)


COMMITTED = Design()


def _committed(noise, shift, design=COMMITTED, shifted=None):
    return lambda rng: judge_committed(*committed(rng, design, noise, shift, shifted), design)


@pytest.mark.parametrize(
    "noise",
    [Noise(job_shared=0.05), Noise(job_shared=0.0, job_case=0.05), Noise(job_shared=0.16)],
    ids=["shared-job-5", "own-job-5", "shared-job-16"],
)
def test_committed_a_a_stays_calm(noise):
    whole, _, _ = rate(TRIALS, 1, _committed(noise, 0.0))
    assert calm(whole)


@pytest.mark.parametrize("pass_order", [True, False], ids=["pass-order", "case-order"])
def test_a_b_a_a_stays_calm(pass_order):
    design = Design(cases=21, pass_order=pass_order)
    whole, _, _ = rate(TRIALS, 2, lambda rng: ab(rng, design, Noise(pass_shared=0.03), 0.0))
    assert calm(whole)


def test_a_uniform_25_percent_shift_fails_the_run_when_jobs_vary_case_by_case():
    whole, _, suite = rate(60, 3, _committed(Noise(job_shared=0.0, job_case=0.05), SHIFT))
    assert whole >= 0.95 and suite >= 0.95


def test_a_25_percent_shift_in_one_case_is_caught():
    """Issue #19 asks 80 %. The case's first look alone catches 88 % on this seed; the runs
    an inconclusive case adds (``extend``) decide the rest, as they do in the plugin."""
    whole, by_case, _ = rate(60, 4, _committed(Noise(job_shared=0.0), SHIFT, shifted=0))
    assert by_case >= 0.8
    first_look = Design(extend=0)
    _, alone, _ = rate(60, 4, _committed(Noise(job_shared=0.0), SHIFT, first_look, shifted=0))
    assert alone < by_case  # the extension runs are where the rest is caught


def test_a_uniform_2x_fails_the_run_suite_wide_on_a_noisy_runner():
    """Runs that vary by 16 % case by case (the CPU class's between-job spread, here not
    shared): the suite-wide test fails the run on a 2x, whatever the cases say."""
    noise = Noise(process=0.16, job_shared=0.0, job_case=0.16)
    whole, by_case, suite = rate(40, 5, _committed(noise, math.log(2)))
    assert suite >= 0.9


@pytest.mark.parametrize("pass_order", [True, False], ids=["pass-order", "case-order"])
def test_a_b_catches_a_uniform_25_percent_shift(pass_order):
    design = Design(cases=21, pass_order=pass_order)
    whole, _, _ = rate(40, 6, lambda rng: ab(rng, design, Noise(pass_shared=0.03), SHIFT))
    assert whole >= 0.95


def test_a_b_with_three_cases_catches_a_uniform_25_percent_shift_on_a_noisy_runner():
    """The live A/B job of issue #19: three cases of five pairs, processes 17 % apart (a
    noisy hour). The suite test pools the pairs within the cases (12 df), where the cases'
    means alone have 2: 29 % of runs caught before, 73 % with it; A/A stays calm."""
    design = Design(cases=3, pairs=5, pass_order=False)
    noise = Noise(process=0.17, pass_shared=0.03)
    whole, _, _ = rate(100, 8, lambda rng: ab(rng, design, noise, SHIFT))
    assert whole >= 0.6
    whole, _, _ = rate(TRIALS, 9, lambda rng: ab(rng, design, noise, 0.0))
    assert calm(whole)


def test_a_uniform_2x_fails_the_run_on_a_calm_runner_with_five_saved_jobs():
    """Jobs that move every case by 5 % together: five saved jobs know that offset well
    enough for a 2x to fail the run (with three, 2 df, only about 70 % of runs)."""
    design = Design(jobs=5)
    whole, _, _ = rate(30, 7, _committed(Noise(job_shared=0.05), math.log(2), design))
    assert whole >= 0.95


def test_a_b_a_a_stays_calm_when_a_runs_place_moves_it():
    """Issue #38: the first run of every case 20 % faster, in case order. Every case opening
    with the reference moves each case's mean ratio by a third of it, and the suite test
    fails A/A runs; cases that take turns at opening (the plan's layout) stay calm."""
    noise = Noise(pass_shared=0.03, first=0.2)
    same = Design(cases=21, pass_order=False, counterbalance=False)
    whole, _, _ = rate(20, 10, lambda rng: ab(rng, same, noise, 0.0))
    assert whole >= 0.5
    turns = Design(cases=21, pass_order=False)
    whole, _, _ = rate(TRIALS, 10, lambda rng: ab(rng, turns, noise, 0.0))
    assert calm(whole)


def _history(jobs, noise, shift, **design):
    d = Design(cases=10, jobs=jobs, k=1, **design)
    return lambda rng: judge_committed(*committed(rng, d, noise, shift), d)


@pytest.mark.parametrize("sd", [0.02, 0.05, 0.16])
def test_a_history_of_twenty_ci_jobs_stays_calm(sd):
    """Gate v4: twenty jobs of one run each, every case of a job moved by the job's offset;
    the default (10 %) moderates the quiet ones and the noisy one keeps its own spread."""
    whole, _, _ = rate(TRIALS, 20, _history(20, Noise(job_shared=sd), 0.0))
    assert calm(whole)


def test_a_quiet_history_catches_a_uniform_15_percent_shift():
    """Twenty jobs 2 % apart know their spread: a 15 % slowdown of every case fails most
    runs, where the default alone (10 %) would hide it."""
    whole, _, _ = rate(40, 21, _history(20, Noise(job_shared=0.02), math.log(1.15)))
    assert whole >= 0.6


def test_a_wild_job_in_the_history_costs_nothing_and_an_old_change_point_no_calm():
    """One job 40 % slow in a history of twenty: left out, the history catches a 25 %
    shift as often as without it. The older half of the history 20 % faster (a regression
    that landed): the window starts after it, and A/A runs stay calm."""
    noise = Noise(job_shared=0.02)
    clean, _, _ = rate(40, 22, _history(20, noise, SHIFT))
    wild, _, _ = rate(40, 22, _history(20, noise, SHIFT, wild_job=math.log(0.6)))
    assert wild >= clean - 0.1
    stepped, _, _ = rate(TRIALS, 23, _history(20, noise, 0.0, old_step=math.log(1.2)))
    assert calm(stepped)
