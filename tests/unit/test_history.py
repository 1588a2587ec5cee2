"""A baseline's history of jobs (``judge.history``): job records, the rolling window, old
files migrated, and ``batchperf baseline append`` taking passing CI jobs' results.

The runs are the committed example's real llama.cpp measurements (tests/data), one results
file per simulated CI job."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from helpers.report_data import example, judged, several_runs, slowed

from pytest_batchperf import SCHEMA_VERSION
from pytest_batchperf.cli import main
from pytest_batchperf.judge import baseline, history
from pytest_batchperf.judge.results import Mode

ROOT = Path(__file__).resolve().parents[2]


def _job(run, n, commit="", environment=None):
    """``run`` as CI job ``n``: its own job record (and environment)."""
    env = environment or run.environment
    job = history.Job(
        f"2026120{n}T000000-{n:06d}",
        f"2026-12-0{n}T00:00:00+00:00",
        commit,
        history.setup_digest(env),
    )
    return replace(run, kind="run", jobs=(job,), environment=env)


@pytest.fixture
def runs():
    """The example over three runs per case, passing against itself (as a CI job is)."""
    run = several_runs(example(), 3)
    return judged(run, replace(run, kind="baseline"))


def _write(path: Path, run) -> str:
    path.write_text(json.dumps(run.to_dict()))
    return str(path)


def test_each_save_records_its_job_and_the_window_keeps_the_last_n(tmp_path, runs):
    path = tmp_path / "b.json"
    for n in range(1, 5):
        baseline.save(path, _job(runs, n, commit=f"c{n}"), keep_jobs=3)
    saved = baseline.load(path)
    assert [j.commit for j in saved.jobs] == ["c2", "c3", "c4"]
    for case in saved.cases.values():
        assert case.jobs == tuple(j.id for j in saved.jobs)
        assert all(len(m.jobs) == 3 for m in case.metrics.values())
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION and len(doc["jobs"]) == 3


def test_a_job_knows_its_commit_from_ci_else_git(monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    assert history.current_commit(tmp_path) == "abc123"
    for name in history.COMMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert history.current_commit(tmp_path) == ""  # not a repository: unknown, not an error
    head = history.current_commit(ROOT)
    assert head == "" or len(head) == 40  # a clone knows it; an sdist does not


def test_a_file_of_the_previous_schema_loads_and_migrates_on_its_next_save(tmp_path, runs):
    """The committed H100 file was saved in one job before jobs had records."""
    old = ROOT / "baselines" / "nvidia-h100-80gb-hbm3" / "vllm-synthetic-8b.json"
    assert json.loads(old.read_text())["schema_version"] == 2
    path = tmp_path / "b.json"
    shutil.copy(old, path)
    loaded = baseline.load(path)
    assert [j.id for j in loaded.jobs] == ["saved-1"] and loaded.saved_jobs == 1
    assert all(c.jobs == ("saved-1",) for c in loaded.cases.values())
    job = _job(replace(loaded, kind="run", cases={}), 1)
    case_id, case = next(iter(loaded.cases.items()))
    baseline.save(path, replace(job, cases={case_id: replace(case, jobs=())}))
    migrated = baseline.load(path)
    assert migrated.cases[case_id].jobs == ("saved-1", job.jobs[0].id)
    assert len(migrated.cases[case_id].metrics["output_tok_s"].jobs) == 2
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_append_takes_passing_jobs_and_skips_failed_and_repeated_ones(tmp_path, runs, capsys):
    target = tmp_path / "base.json"
    one = _write(tmp_path / "1.json", _job(runs, 1))
    two = _write(tmp_path / "2.json", _job(runs, 2))
    slow = _job(runs, 3)
    for case_id in runs.cases:  # every case 3x slower: the gate fails the job
        slow = slowed(slow, case_id, 3.0)
    failed = replace(judged(slow, replace(runs, kind="baseline")), jobs=slow.jobs)
    three = _write(tmp_path / "3.json", failed)
    assert main(["baseline", "append", one, two, three, "--to", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"skipped {three}: it failed (" in out
    assert "appended 2 of 3 job(s)" in out and "it holds 2 job(s)" in out
    assert main(["baseline", "append", two, "--to", str(target)]) == 0
    assert "is already in the baseline" in capsys.readouterr().out
    assert baseline.load(target).saved_jobs == 2
    assert main(["baseline", "show", str(target)]) == 0
    shown = capsys.readouterr().out
    assert "jobs: 2, the fewest any case holds 2" in shown
    assert "2026-12-01T00:00:00+00:00 20261201T000000-000001" in shown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: replace(r, hardware_class="cpu-other-4c"), "but the baseline holds"),
        (lambda r: replace(r, profile="other"), "but the baseline holds"),
        (
            lambda r: replace(r, environment={**r.environment, "packages": {"vllm": "9"}}),
            "another setup (packages differ)",
        ),
        (lambda r: replace(r, mode=Mode.AB), "an A/B run"),
    ],
)
def test_append_refuses_another_class_profile_or_setup_in_one_line(
    tmp_path, runs, capsys, change, message
):
    target = tmp_path / "base.json"
    assert (
        main(
            ["baseline", "append", _write(tmp_path / "1.json", _job(runs, 1)), "--to", str(target)]
        )
        == 0
    )
    before = target.read_bytes()
    good = _write(tmp_path / "2.json", _job(runs, 2))
    bad = _write(tmp_path / "3.json", change(_job(runs, 3)))
    capsys.readouterr()
    assert main(["baseline", "append", good, bad, "--to", str(target)]) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was appended" in err and err.count("\n") == 1
    assert target.read_bytes() == before  # the good job before it was not written either


def test_a_runner_whose_jobs_hide_the_tolerance_is_said_in_one_line(runs):
    """Against one saved job the machine kind's between-job spread stands: the suite-wide
    test cannot see the tolerance, and the summary says how much it can see, naming A/B."""
    from pytest_batchperf.report.summary import committed_limit_line, markdown, terminal_lines

    line = committed_limit_line(runs)
    tok = next(c for c in runs.suite if c.metric == "output_tok_s")
    assert tok.detectable > tok.tolerance
    assert f"change of {tok.detectable:.0%} or more" in line and "A/B mode" in line
    assert line in terminal_lines(runs) and line in markdown(runs)
    assert committed_limit_line(replace(runs, mode=Mode.AB)) is None
