"""Gate v2 through pytest (pytester, on the SimulatedEngine: a fake engine for the plugin's
logic): runs are fresh engines, run in passes; no path skips the gate."""

from __future__ import annotations

import json

import pytest
from conftest import SIM_PROFILE
from helpers.sim import baseline_files, results, run_sim, save_jobs

B8 = "test_suite.py::test_sweep[B8-continuous]"


def _order(p) -> list[tuple[int, str]]:
    """(engine instance, case) of every round, from the fake engine's log."""
    rows = [line.split() for line in (p.path / "order.log").read_text().splitlines()]
    return [(int(i), f"{s}-{b}") for i, s, b in rows]


def test_runs_are_fresh_engines_in_passes_and_the_baseline_keeps_them(sim_project):
    p = sim_project()
    result = run_sim(
        p,
        "--batchperf-save",
        "--batchperf-runs",
        "3",
        "--batchperf-set",
        f"log={json.dumps(str(p.path / 'order.log'))}",
    )
    result.assert_outcomes(passed=4)  # each case reported once, with its final outcome
    order = _order(p)
    engines = list(dict.fromkeys(i for i, _ in order))
    assert len(engines) == 3  # one fresh engine per pass
    # pass-major: every case's first run on engine 1, then every case's second on engine 2
    for k, engine in enumerate(engines):
        cases = {c for i, c in order if i == engine}
        assert cases == {"static-2", "continuous-2", "static-8", "continuous-8"}, k
    assert [i for i, _ in order] == sorted(i for i, _ in order)
    case = json.loads(baseline_files(p)[0].read_text())["cases"][B8]
    assert len(case["metrics"]["output_tok_s"]["runs"]) == 3
    assert [r["slot"] for r in results(p)["cases"][B8]["runs"]] == [1, 2, 3]


def test_a_a_rerun_passes_and_a_real_slowdown_fails_against_runs(sim_project):
    p = sim_project(noise=0.01)
    noise = ("--batchperf-set", "process_noise=0.03")
    save_jobs(p, "--batchperf-runs", "4", *noise).assert_outcomes(passed=4)
    run_sim(p, *noise).assert_outcomes(passed=4)
    assert "regressed" not in results(p)["verdict_counts"]
    slow = run_sim(p, *noise, "--batchperf-set", "slowdown=0.4")
    slow.assert_outcomes(failed=4)
    slow.stdout.fnmatch_lines(["*output_tok_s: * -> * 1/s (-*%, interval*12 vs * runs*"])
    gate = results(p)["gate"]
    assert gate["cases"] == 4 and gate["alpha"] == 0.01 and gate["looks"] == 3


def test_a_lost_batch_size_is_a_capacity_regression(sim_project):
    p = sim_project()
    run_sim(p, "--batchperf-save", "--batchperf-runs", "2").assert_outcomes(passed=4)
    result = run_sim(p, "--batchperf-set", "oom_above=4")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*capacity regressed (max_batch_size): batch size 8 fitted in the baseline and no "
            "longer fits: batch size 8 is above the simulated limit 4*"
        ]
    )
    assert result.ret == 1
    case = results(p)["cases"][B8]
    assert case["verdict"] == "regressed"
    assert case["comparisons"][0]["metric"] == "max_batch_size"


def test_a_size_that_never_fitted_skips(sim_project):
    p = sim_project()
    result = run_sim(p, "--batchperf-set", "oom_above=4", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*batch size 8 does not fit*"])


def test_a_truncated_baseline_stops_plain_pytest(sim_project):
    """No batch-size flag: the sweep's sizes come from the profile, so the baseline is read
    during collection; that must not swallow the error."""
    p = sim_project()
    run_sim(p, "--batchperf-save", "--batchperf-runs", "2").assert_outcomes(passed=4)
    [path] = baseline_files(p)
    path.write_text(path.read_text()[:200])
    result = p.runpytest("-p", "no:cacheprovider", "--batchperf-profile", "sim")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {path}: corrupt baseline (invalid JSON*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_under_ci_a_class_without_a_baseline_fails(sim_project, monkeypatch):
    p = sim_project()
    other = p.path / "baselines" / "cpu-some-other-machine-64c"
    other.mkdir(parents=True)
    (other / "sim.json").write_text("{}")
    monkeypatch.setenv("CI", "true")
    result = run_sim(p)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: no baseline of profile 'sim' for hardware class 'cpu-*' in *baselines "
            "(required under CI or --batchperf-require-baseline); baselines exist for: "
            "cpu-some-other-machine-64c. Save one on this machine class with --batchperf-save"
        ]
    )
    # locally it is new, and the summary names the classes that have one; a save under CI
    # creates it
    monkeypatch.delenv("CI")
    local = run_sim(p)
    local.assert_outcomes(passed=4)
    local.stdout.fnmatch_lines(
        [
            "*NOTICE no baseline for class cpu-*; baselines of this profile exist for: "
            "cpu-some-other-machine-64c"
        ]
    )
    run_sim(
        p, "--batchperf-require-baseline", "--batchperf-save", "--batchperf-runs", "2"
    ).assert_outcomes(passed=4)


def test_a_one_run_baseline_still_gates_and_asks_to_be_saved_again(sim_project):
    """A schema-1 baseline (one run per case, its rounds as samples) loads as one run;
    the run is judged conservatively and says so."""
    p = sim_project(noise=0.02)
    run_sim(p, "--batchperf-save", "--batchperf-runs", "2").assert_outcomes(passed=4)
    [path] = baseline_files(p)
    doc = json.loads(path.read_text())
    doc["schema_version"] = 1
    for case in doc["cases"].values():
        for m in case["metrics"].values():
            m["samples"] = [m.pop("runs")[0]] * 3  # one run of three equal rounds
    path.write_text(json.dumps(doc))
    result = run_sim(p)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*NOTICE*holds one run per case: it is judged conservatively; "
            "re-save it with --batchperf-save (--batchperf-runs 5)*"
        ]
    )
    slow = run_sim(p, "--batchperf-set", "slowdown=0.5")  # beyond twice the tolerance
    slow.assert_outcomes(failed=4)
    slow.stdout.fnmatch_lines(["*one reference run: judged on rounds at 2x the tolerance*"])


def test_an_error_while_summarising_errors_one_case_and_reports_are_written(sim_project):
    p = sim_project()
    result = run_sim(p, "--batchperf-set", "empty_at=8")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        ["*test_sweep[[]B8-continuous[]]: TraceError: the round produced no tokens*"]
    )
    assert "Traceback" not in result.stdout.str()
    data = results(p)
    assert data["cases"][B8]["verdict"] == "error"
    for name in ("results.json", "summary.md", "index.html"):
        assert (p.path / "reports" / name).is_file()


def test_a_marker_asks_for_more_runs(sim_project):
    suite = """
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed
WL = WorkloadSpec(num_requests=8, prompt=fixed(8), output=fixed(8))

@pytest.mark.batchperf(runs=3)
def test_more(batchperf):
    batchperf.run(WL, "continuous", 4)

def test_default(batchperf):
    batchperf.run(WL, "continuous", 4)
"""
    p = sim_project(suite=suite)
    p.runpytest(
        "-p", "no:cacheprovider", "--batchperf-profile", "sim", "--benchmark-disable"
    ).assert_outcomes(passed=2)
    cases = results(p)["cases"]
    assert len(cases["test_suite.py::test_more"]["runs"]) == 3
    assert len(cases["test_suite.py::test_default"]["runs"]) == 1


def test_xdist_workers_run_every_run_of_their_cases(sim_project):
    pytest.importorskip("xdist")
    p = sim_project()
    run_sim(p, "-n", "2", "--batchperf-save", "--batchperf-runs", "2").assert_outcomes(passed=4)
    [path] = baseline_files(p)
    cases = json.loads(path.read_text())["cases"]
    assert {len(c["metrics"]["output_tok_s"]["runs"]) for c in cases.values()} == {2}


def test_the_profile_can_set_runs(sim_project):
    p = sim_project()
    p.makefile(".toml", pyproject=SIM_PROFILE.format(noise=0.02) + "runs = 2\n")
    run_sim(p).assert_outcomes(passed=4)
    assert {len(c["runs"]) for c in results(p)["cases"].values()} == {2}


@pytest.fixture
def busy_machine(monkeypatch, tmp_path):
    """Other work on the machine while ``flag`` exists: runs read as disturbed (and the
    fake engine, given the flag, runs twice as slow); waiting for quiet ends that work."""
    from pytest_batchperf.measure import interference, runner

    flag = tmp_path / "busy"
    waits = []

    class Probe:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            self.result = interference.Interference(
                1.0, 2.0, 80.0 if flag.exists() else 0.0, 0.0, 0.0, 1.0
            )
            return self

        def __exit__(self, *exc):
            return None

    def wait_for_quiet(*args, **kwargs):
        waits.append(flag.exists())
        flag.unlink(missing_ok=True)
        return True

    monkeypatch.setattr(runner, "InterferenceProbe", Probe)
    monkeypatch.setattr(interference, "wait_for_quiet", wait_for_quiet)
    return flag, waits


def test_a_regression_on_a_disturbed_run_is_measured_again_on_a_quiet_machine(
    sim_project, busy_machine
):
    flag, waits = busy_machine
    p = sim_project(noise=0.01)
    busy = ("--batchperf-set", f"busy_flag={json.dumps(str(flag))}", "-k", "B8-continuous")
    save_jobs(p, *busy).assert_outcomes(passed=1)
    flag.touch()  # other work starts: the first run is twice as slow, and flagged
    run_sim(p, *busy).assert_outcomes(passed=1)
    assert waits == [True]
    case = results(p)["cases"][B8]
    assert case["verdict"] != "regressed" and len(case["runs"]) == 1  # the disturbed one out
    assert any(
        "measured 1 more run(s), judged on the 1 quiet one(s)" in w for w in case["warnings"]
    )
    # a real slowdown still fails after the quiet re-measurement
    flag.touch()
    run_sim(p, *busy, "--batchperf-set", "slowdown=1.0").assert_outcomes(failed=1)
    assert waits == [True, True]


def test_a_regression_that_stays_disturbed_says_its_verdict_rests_on_disturbed_runs(
    sim_project, busy_machine, monkeypatch
):
    from pytest_batchperf.measure import interference

    flag, _ = busy_machine
    monkeypatch.setattr(interference, "wait_for_quiet", lambda *a, **k: False)
    p = sim_project(noise=0.01)
    busy = ("--batchperf-set", f"busy_flag={json.dumps(str(flag))}", "-k", "B8-continuous")
    save_jobs(p, *busy).assert_outcomes(passed=1)
    flag.touch()  # the machine stays busy
    run_sim(p, *busy).assert_outcomes(failed=1)
    data = results(p)
    assert any("rests on disturbed runs" in w for w in data["cases"][B8]["warnings"])
    assert any("rerun on a quiet runner: " + B8 in n for n in data["notices"])


def test_the_profile_and_the_marker_choose_the_metrics_that_gate(sim_project):
    suite = """
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed
WL = WorkloadSpec(num_requests=16, prompt=fixed(16), output=fixed(16), seed=3)

@pytest.mark.batchperf(gate_metrics=["peak_rss_mib"])
def test_memory_only(batchperf):
    batchperf.run(WL, "continuous", 8)

def test_default(batchperf):
    batchperf.run(WL, "continuous", 8)
"""
    p = sim_project(noise=0.01, suite=suite)
    save_jobs(p).assert_outcomes(passed=2)
    run_sim(p, "--batchperf-set", "slowdown=1.0").assert_outcomes(passed=1, failed=1)
    assert results(p)["cases"]["test_suite.py::test_memory_only"]["verdict"] != "regressed"
    p.makefile(".toml", pyproject=SIM_PROFILE.format(noise=0.01) + "gate_metrics = ['x']\n")
    bad = run_sim(p)
    assert bad.ret != 0
    bad.stderr.fnmatch_lines(["*profile 'sim': gate_metrics: unknown metric x (known:*"])
    memory = "gate_metrics = ['peak_rss_mib']\n"
    p.makefile(".toml", pyproject=SIM_PROFILE.format(noise=0.01) + memory)
    run_sim(p, "--batchperf-set", "slowdown=1.0").assert_outcomes(passed=2)
    data = results(p)
    assert data["gate"]["gate_metrics"] == ["peak_rss_mib"] and data["suite"] == []


def test_a_test_that_parametrizes_batch_size_itself_keeps_its_sizes(sim_project):
    suite = """
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed
WL = WorkloadSpec(num_requests=8, prompt=fixed(8), output=fixed(8))

@pytest.mark.parametrize("batch_size", [3])
def test_own(batchperf, batch_size):
    batchperf.run(WL, "continuous", batch_size)
"""
    p = sim_project(suite=suite)
    run_sim(p).assert_outcomes(passed=1)
    assert list(results(p)["cases"]) == ["test_suite.py::test_own[3]"]


def test_the_pass_loop_runs_on_this_pytest():
    """The pass loop re-runs items with pytest's ``runtestprotocol`` (no public API): a pytest
    that moves it must fail here, not silently change the run order."""
    from pytest_batchperf import passes

    assert passes.SUPPORTED
