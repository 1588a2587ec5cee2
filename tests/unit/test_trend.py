"""A baseline's history read as a series (``judge.trend``): change points, wild jobs, drift,
the window the gate judges against, the job variance a history earns, ``batchperf
history`` and the report's trend lines. Histories are simulated (``gate_sim``: the fake
runner the gate's calibration uses), seeded."""

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from gate_sim import Design, Noise, committed, judge_committed

from pytest_batchperf import run_summary
from pytest_batchperf.cli import main
from pytest_batchperf.judge import gate, stats, trend
from pytest_batchperf.judge.decision import Verdict
from pytest_batchperf.report.html import render

CALM = Noise(job_shared=0.03)


def _history(jobs=20, noise=CALM, seed=1, **design):
    d = Design(cases=6, jobs=jobs, k=1, **design)
    base, cand, extra = committed(random.Random(seed), d, noise, 0.0)
    return d, base, cand, extra


def test_a_step_is_a_change_point_and_noise_is_not():
    rng = np.random.default_rng(3)
    flat = rng.normal(0, 1, 30)
    assert trend.change_points(flat) == []
    step = np.r_[rng.normal(0, 1, 15), rng.normal(5, 1, 15)]
    assert trend.change_points(step) == [15]
    assert trend.change_points(step[:5]) == []  # too short to hold two levels


def test_a_wild_value_is_found_and_a_normal_sample_has_none():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 20)
    assert trend.wild(x, trend.noise_scale(x)) == []
    x[7] += 12
    assert trend.wild(x, trend.noise_scale(x)) == [7]


def test_drift_is_found_where_every_step_is_inside_the_noise():
    rng = np.random.default_rng(5)
    flat = rng.normal(0, 0.01, 20)
    assert trend.drift(flat) is None
    ramp = flat + np.r_[np.zeros(12), np.linspace(0.02, 0.16, 8)]
    found = trend.drift(ramp)
    assert found is not None and 10 <= found.start <= 13 and 0.1 < found.total < 0.22
    assert max(abs(np.diff(ramp))) < 0.06  # no single step stands out


def test_the_window_starts_after_an_old_change_point():
    """The older half of the history 30 % slower (a speed-up landed): the window is the
    jobs since, and a job at today's level passes."""
    d, base, cand, extra = _history(old_step=math.log(0.7))
    window, reading = gate.window(base)
    assert reading.change_points == ("job-10",)
    assert all(w.start == "job-10" and len(w.kept) == 10 for w in reading.cases.values())
    assert all(len(c.metrics["output_tok_s"].runs) == 10 for c in window.cases.values())
    run = judge_committed(base, cand, extra, d)
    assert not any(c.verdict is Verdict.REGRESSED for c in run.cases.values())


def test_a_wild_job_is_left_out_of_the_window():
    d, base, _, _ = _history(wild_job=math.log(0.5))
    window, reading = gate.window(base)
    assert reading.wild_jobs == ("job-10",)
    assert all("job-10" not in c.jobs for c in window.cases.values())
    assert all(len(c.metrics["ttft_ms_p50"].runs) == 19 for c in window.cases.values())


def test_a_short_quiet_history_is_moderated_and_a_long_or_noisy_one_keeps_its_own():
    prior = stats.Prior(0.10**2, stats.JOB_PRIOR_DF)
    s2, df = stats.job_variance(0.02**2, 1, prior)  # two jobs: the default weighs in
    assert 0.02**2 < s2 < 0.10**2 and df == 1 + stats.JOB_PRIOR_DF
    assert stats.job_variance(0.02**2, 2, prior) == (0.02**2, 2)  # three: its own
    # pulled toward a quieter default, a noisy runner's false alarms would rise
    assert stats.job_variance(0.2**2, 2, prior) == (0.2**2, 2)


def test_a_quiet_history_catches_what_the_default_alone_cannot():
    """20 jobs 1 % apart, every case 8 % slower: caught; the same job against the history's
    first job alone (the default decides) passes as inconclusive."""
    d, base, _, _ = _history(noise=Noise(job_shared=0.01, process=0.01, round=0.01))
    slow = Design(cases=6, jobs=20, k=1, runs=1)
    _, cand, extra = committed(
        random.Random(2), slow, Noise(job_shared=0.01, process=0.01, round=0.01), math.log1p(0.08)
    )[:3]
    policy = gate.GatePolicy(tolerances={"*": 0.05}, cases=6)
    run = gate.compare_runs(cand, base, policy)
    assert any(c.verdict is Verdict.REGRESSED for c in run.suite)
    first = replace(
        base,
        cases={
            cid: replace(
                c,
                jobs=c.jobs[:1],
                metrics={n: replace(m, runs=m.runs[:1], jobs=()) for n, m in c.metrics.items()},
            )
            for cid, c in base.cases.items()
        },
        jobs=base.jobs[:1],
    )
    alone = gate.compare_runs(cand, first, policy)
    assert not any(c.verdict is Verdict.REGRESSED for c in alone.suite)


def test_batchperf_history_prints_each_cases_trend_and_the_change_point(tmp_path, capsys):
    _, base, _, _ = _history(old_step=math.log(0.7))
    path = tmp_path / "b.json"
    path.write_text(json.dumps(base.to_dict()))
    assert main(["history", str(path)]) == 0
    out = capsys.readouterr().out
    assert "change points (every case): job-10" in out
    assert out.count("window since job-10 (10 jobs)") == 6
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")


def test_the_report_draws_each_cases_history_with_this_job_last():
    _, base, cand, _ = _history()
    window, reading = gate.window(base)
    run = gate.compare_runs(cand, base, gate.GatePolicy(cases=6))
    run = replace(run, history=trend.summary(base, reading, "output_tok_s", cand.cases))
    page = render(run)
    assert page.count('<svg class="trend"') == 6
    assert page.count('<circle class="now"') == 6
    assert "20 jobs of the history, then this job" in page


@pytest.mark.parametrize("bad", [[], [1.0]])
def test_a_history_too_short_to_read_has_no_change_point_or_drift(bad):
    assert trend.change_points(bad) == [] and trend.drift(bad) is None


def test_the_run_says_in_one_line_where_the_window_was_cut_and_what_drifts():
    _, base, _, _ = _history(old_step=math.log(0.7))
    summary = trend.summary(base, gate.window(base)[1], "output_tok_s")
    summary["drift"] = [
        {"case_id": "c1", "metric": "output_tok_s", "since": "job-14", "change": -0.12}
    ]
    lines = run_summary.history_lines(summary)
    assert lines == [
        "the history changed level: 6 case(s) judged against the jobs since job-10 only "
        "(batchperf history shows the trend)",
        "drift: c1 output_tok_s -12.0% since job job-14, each job inside the noise "
        "(not failed; look at its trend)",
    ]
    _, base, _, _ = _history(wild_job=math.log(0.5))
    summary = trend.summary(base, gate.window(base)[1], "output_tok_s")
    assert run_summary.history_lines(summary) == ["1 wild job(s) of the history left out: job-10"]
    assert run_summary.history_lines({}) == []
