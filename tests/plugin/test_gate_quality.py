"""``batchperf gate-quality`` end to end on the SimulatedEngine (a fake: this checks the
measuring and judging pipeline, not a figure): every repetition a fresh pytest process;
a quiet engine gives no A/A false alarm and a 50 % slowdown is caught."""

import itertools
import json
import os
import subprocess
import sys

import pytest

from pytest_batchperf.quality import schedule

BATCHPERF = [sys.executable, "-m", "pytest_batchperf.cli"]


def _gate_quality(pytester, *args):
    env = {**os.environ, "PYTHONPATH": str(pytester.path)}
    return subprocess.run(
        [
            *BATCHPERF,
            "gate-quality",
            "--suite",
            "test_suite.py",
            "--profile",
            "sim",
            "--aa",
            "2",
            "--per-slowdown",
            "1",
            "--slowdowns",
            "0.5",
            "--out",
            "gq",
            *args,
            "--",
            "--batchperf-batch-sizes",
            "2",
            "--benchmark-disable",
        ],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _rejudged_alone(pytester, out):
    """The side-by-side rows of ``out``'s data re-judged from a copy without its
    repetitions' results.json (as the docs commit it)."""
    alone = pytester.path / "committed" / "gate-quality.json"
    alone.parent.mkdir()
    alone.write_text((pytester.path / out / "gate-quality.json").read_text())
    side = subprocess.run(
        [*BATCHPERF, "gate-quality", "--rejudge", "--analyse", str(alone), "--out", "side"],
        capture_output=True,
        text=True,
        cwd=pytester.path,
    )
    assert side.returncode == 0, side.stderr
    return [r for r in side.stdout.splitlines() if r.startswith("| ") and r[2].isdigit()]


@pytest.mark.parametrize(
    "mode",
    [("--save-runs", "2", "--save-jobs", "3"), ("--ab", "--pairs", "2")],
    ids=["baseline", "ab"],
)
def test_gate_quality_measures_false_alarms_and_detection(sim_project, mode):
    p = sim_project(noise=0.0)
    done = _gate_quality(p, *mode)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((p.path / "gq" / "gate-quality.json").read_text())
    reps = data["repetitions"]
    assert [r["slowdown"] for r in reps] == schedule(2, 1, [0.5])
    assert [any(v == "regressed" for v in r["verdicts"].values()) for r in reps] == [
        r["slowdown"] > 0 for r in reps
    ]
    table = (p.path / "gq" / "gate-quality.md").read_text()
    assert "| **whole run** | 0/2 (0%) | 1/1 (100%) |" in table
    again = subprocess.run(
        [*BATCHPERF, "gate-quality", "--analyse", str(p.path / "gq" / "gate-quality.json")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "whole run" in again.stdout
    rejudged = subprocess.run(
        [
            *BATCHPERF,
            "gate-quality",
            "--rejudge",
            "--analyse",
            str(p.path / "gq" / "gate-quality.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert rejudged.returncode == 0, rejudged.stderr
    assert "| **whole run** | 0/2 (0%) | 1/1 (100%) |" in rejudged.stdout
    # the compact data alone (as committed in docs): old and new verdicts side by side
    rows = _rejudged_alone(p, "gq")
    assert [("failed" in r.split("|")[3], "failed" in r.split("|")[4]) for r in rows] == [
        (r["slowdown"] > 0, r["slowdown"] > 0) for r in reps
    ]


def test_schedule_spreads_slowdowns_among_a_a():
    order = schedule(6, 2, [0.1, 0.25])
    assert sorted(order) == [0.0] * 6 + [0.1, 0.1, 0.25, 0.25]
    slowed = [i for i, s in enumerate(order) if s]
    assert min(b - a for a, b in itertools.pairwise(slowed)) >= 2


def test_against_an_existing_baseline_the_data_keeps_it_for_judging_again(sim_project):
    p = sim_project(noise=0.0)
    assert _gate_quality(p, "--save-runs", "2", "--save-jobs", "3").returncode == 0
    done = _gate_quality(p, "--baseline-dir", "gq/baselines", "--out", "again")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((p.path / "again" / "gate-quality.json").read_text())
    assert (data["save_jobs"], data["save_runs"]) == (3, 2)
    beside = subprocess.run(  # with the repetitions' results.json beside it
        [*BATCHPERF, "gate-quality", "--rejudge", "--analyse", "again/gate-quality.json"],
        capture_output=True,
        text=True,
        cwd=p.path,
    )
    assert "| **whole run** | 0/2 (0%) | 1/1 (100%) |" in beside.stdout, beside.stderr
    assert {len(m) for c in data["save"].values() for m in c.values()} == {6}
    rows = _rejudged_alone(p, "again")
    assert [("failed" in r.split("|")[4]) for r in rows] == [
        r["slowdown"] > 0 for r in data["repetitions"]
    ]
