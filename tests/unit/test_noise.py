"""The noise audit (``judge.noise``, ``batchperf noise``) and the default compute threads
that leave the driver a core (``device``).

The bimodal runs are the n_threads=2 runs of docs/results/cpu-noise.md; the calm ones are
drawn from a normal distribution (no engine runs here)."""

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from helpers.report_data import example

from pytest_batchperf.cli import main
from pytest_batchperf.device import compute_threads, oversubscribed
from pytest_batchperf.judge import noise
from pytest_batchperf.judge.results import MetricRuns, RunResults
from pytest_batchperf.run_summary import notices

BIMODAL = [6454.0, 6712.0, 13075.0, 6580.0, 12890.0, 12702.0]


def test_two_groups_of_runs_are_bimodal():
    low, high = noise.modes(BIMODAL)
    assert sorted(low) == [6454.0, 6580.0, 6712.0]
    assert sorted(high) == [12702.0, 12890.0, 13075.0]


def test_normal_runs_are_rarely_called_bimodal():
    rng = random.Random(7)
    flagged = sum(
        noise.modes([8000 * (1 + rng.gauss(0, 0.05)) for _ in range(6)]) is not None
        for _ in range(400)
    )
    assert flagged <= 8  # the test's own rate is 1 %: 4 expected


def test_a_small_separation_is_not_flagged():
    assert noise.modes([1000.0, 1001.0, 1002.0, 1030.0, 1031.0, 1032.0]) is None


def test_a_jobs_offset_is_not_a_mode():
    """Two save jobs 30 % apart, each calm: two jobs, not two placements."""
    m = MetricRuns.build("output_tok_s", [[x] for x in (100, 101, 99, 130, 131, 129)])
    s = noise.spread("c", replace(m, jobs=(3, 3)))
    assert s.modes is None
    assert s.process_sd == pytest.approx(0.0088, abs=0.001)
    assert s.job_sd == pytest.approx(0.186, abs=0.005)


def test_measure_saves_one_job_then_audits_it(tmp_path, monkeypatch, capsys):
    """The pytest run is replaced (a plugin-logic test): it gets the save arguments, and what
    it saved is audited."""
    seen = []

    def fake_pytest(cmd):
        seen.append(cmd)
        out = Path(cmd[cmd.index("--batchperf-baseline-dir") + 1]) / "cls"
        out.mkdir(parents=True)
        (out / "default.json").write_text(Path(_file(tmp_path, BIMODAL)).read_text())
        return 0

    monkeypatch.setattr("subprocess.call", fake_pytest)
    args = ["noise", "--measure", "6", "--out", str(tmp_path / "audit"), "--", "suites/x.py"]
    assert main(args) == 1
    cmd = seen[0]
    assert cmd[3] == "suites/x.py" and "--batchperf-save" in cmd
    assert cmd[cmd.index("--batchperf-runs") + 1] == "6"
    assert "bimodal" in capsys.readouterr().out
    assert main(args) == 2  # the folder already holds a baseline: never mixed with a new job


def _file(tmp_path: Path, values: list[float]) -> str:
    run = example()
    case_id = sorted(run.cases)[0]
    case = run.cases[case_id]
    metrics = {"output_tok_s": MetricRuns.build("output_tok_s", [[v] for v in values])}
    cases = {case_id: replace(case, metrics=metrics)}
    one = RunResults(run.profile, run.hardware_class, run.environment, cases)
    path = tmp_path / "base.json"
    path.write_text(json.dumps(replace(one, kind="baseline").to_dict()))
    return str(path)


def test_noise_command_flags_a_bimodal_case_with_exit_1(tmp_path, capsys):
    assert main(["noise", _file(tmp_path, BIMODAL)]) == 1
    out = capsys.readouterr().out
    assert "**bimodal**: 3 runs at 6,454-6,712, 3 at 1.27e+04-1.308e+04" in out
    assert "1 case(s) bimodal" in out


def test_noise_command_reports_a_calm_case_with_exit_0(tmp_path, capsys):
    assert main(["noise", _file(tmp_path, [8000, 8100, 7950, 8050, 8020, 7990])]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert "| 6 | 1 | 8,010 | 0.6% | - | 7,950-8,100 |" in row and "bimodal" not in row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give baseline or results files, or --measure N"),
        (["--measure", "1"], "at least 2 runs"),
    ],
)
def test_noise_command_bad_input_is_one_line(args, message, capsys):
    assert main(["noise", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(("usable", "threads"), [(1, 1), (2, 1), (2.5, 1), (3, 2), (16, 15)])
def test_compute_threads_leave_the_driver_a_core(usable, threads):
    assert compute_threads(usable) == threads
    # pinned apart from the driver, the engine computes on all of its own CPUs
    assert compute_threads(usable, pinned=(1, 2, 3)) == 3


def test_a_run_says_when_the_engine_leaves_the_driver_no_core():
    assert oversubscribed(1, 2) is None
    line = oversubscribed(2, 2)
    assert "2 thread(s)" in line and "2 usable cores" in line and "unset for 1" in line


def test_the_notice_reads_the_engines_description():
    class Setup:
        other_classes = ()
        baseline = None

    said = notices(Setup(), None, True, {}, (), (), [{"compute_threads": 2}], 2.0)
    assert len(said) == 1 and "computes on 2 thread(s)" in said[0]
    assert notices(Setup(), None, True, {}, (), (), [{"compute_threads": 1}], 2.0) == ()
