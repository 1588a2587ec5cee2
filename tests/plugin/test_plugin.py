"""The plugin's behaviour through pytester, on the SimulatedEngine (a fake engine whose
virtual clock makes these tests independent of machine load). The same flows on the
real llama.cpp engine are in test_llama_cpp.py."""

import json

import pytest
from conftest import SIM_PROFILE
from helpers.sim import baseline_files as _baseline_files
from helpers.sim import results as _results
from helpers.sim import run_sim, save_jobs

from pytest_batchperf import SCHEMA_VERSION


def test_first_run_is_new_passes_and_writes_reports(sim_project):
    p = sim_project()
    result = run_sim(p)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*batchperf*", "*profile sim on cpu-*: 4 new*", "*Optimal batch size: *"]
    )
    data = _results(p)
    assert data["schema_version"] == SCHEMA_VERSION and data["profile"] == "sim"
    assert {c["verdict"] for c in data["cases"].values()} == {"new"}
    case = data["cases"]["test_suite.py::test_sweep[B8-continuous]"]
    assert [len(r) for r in case["metrics"]["output_tok_s"]["rounds"]] == [5]  # 1 run, 5 rounds
    assert case["params"]["batch_size"] == 8 and case["params"]["strategy"] == "continuous"
    assert (p.path / "reports" / "summary.md").read_text().startswith("## batchperf: 4 new")
    assert not _baseline_files(p), "a baseline is written only with --batchperf-save"


def test_save_then_rerun_passes_a_a(sim_project):
    p = sim_project(noise=0.03)
    run_sim(p, "--batchperf-save").assert_outcomes(passed=4)
    [path] = _baseline_files(p)
    saved = json.loads(path.read_text())
    assert saved["kind"] == "baseline" and len(saved["cases"]) == 4
    # a save measures 5 runs per case by default, and keeps one summary per run
    case = saved["cases"]["test_suite.py::test_sweep[B8-continuous]"]
    assert len(case["metrics"]["output_tok_s"]["runs"]) == 5
    for _ in range(3):
        result = run_sim(p)
        result.assert_outcomes(passed=4)
        counts = _results(p)["verdict_counts"]
        assert "regressed" not in counts and "error" not in counts, counts


def test_forty_percent_slowdown_fails_with_readable_lines(sim_project):
    p = sim_project(noise=0.03)
    # 3 save jobs of 4 runs: the gate knows how much jobs differ
    save_jobs(p, "--batchperf-runs", "4").assert_outcomes(passed=4)
    result = run_sim(p, "--batchperf-set", "slowdown=0.4")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*metric(s) regressed against its reference*",
            "*output_tok_s: * -> * 1/s (-2?.?%, interval [[]*], p=*, 12 vs * runs; tolerance 10%, "
            "detectable *%, higher is better)*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    data = _results(p)
    assert data["verdict_counts"] == {"regressed": 4}
    comp = {
        c["metric"]: c for c in data["cases"]["test_suite.py::test_sweep[B2-static]"]["comparisons"]
    }
    assert comp["output_tok_s"]["verdict"] == "regressed"
    assert comp["e2e_ms_p95"]["verdict"] == "regressed"  # latency cases fail too
    # not a headline metric: shown with its change, not gated
    assert comp["e2e_ms_p50"]["verdict"] == "pass" and not comp["e2e_ms_p50"]["gated"]


def test_save_does_not_fail_and_merges_subsets(sim_project):
    p = sim_project()
    run_sim(p, "--batchperf-save", "-k", "static").assert_outcomes(passed=2, deselected=2)
    run_sim(
        p, "--batchperf-save", "-k", "continuous", "--batchperf-set", "slowdown=0.5"
    ).assert_outcomes(passed=2, deselected=2)
    [path] = _baseline_files(p)
    assert len(json.loads(path.read_text())["cases"]) == 4


def test_missing_cases_are_listed(sim_project):
    p = sim_project()
    run_sim(p, "--batchperf-save").assert_outcomes(passed=4)
    p.makepyfile(
        test_suite=(p.path / "test_suite.py")
        .read_text()
        .replace('"static", "continuous"', '"continuous"')
    )
    result = run_sim(p)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*MISSING test_suite.py::test_sweep[B2-static]*"])
    assert len(_results(p)["missing"]) == 2


def test_corrupt_baseline_is_one_line_and_left_alone(sim_project):
    p = sim_project()
    run_sim(p, "--batchperf-save").assert_outcomes(passed=4)
    [path] = _baseline_files(p)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated
    result = run_sim(p, "--batchperf-save")
    assert result.ret == 4
    err = result.stderr.str()
    assert f"ERROR: {path}: corrupt baseline (invalid JSON" in err
    assert "Traceback" not in err + result.stdout.str()
    assert path.read_text() == text[: len(text) // 2], "a corrupt baseline is never overwritten"


def test_future_schema_baseline_is_refused(sim_project):
    p = sim_project()
    run_sim(p, "--batchperf-save").assert_outcomes(passed=4)
    [path] = _baseline_files(p)
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    result = run_sim(p)
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: {path}: written by a newer pytest-batchperf (schema 99*"])


def test_inconclusive_warns_adds_runs_and_fails_only_when_strict(sim_project):
    """30 % slower, but fresh processes of this engine differ by about 30 % too: beyond
    tolerance, no evidence. The case adds runs (--batchperf-extend, 2 by default), stays
    inconclusive, warns, and fails only under --batchperf-strict."""
    p = sim_project(noise=0.0)
    common = (
        "-k",
        "B2-static",
        "--batchperf-set",
        "process_noise=0.3",
        "--batchperf-set",
        "seed=1",
    )
    run_sim(p, "--batchperf-save", *common).assert_outcomes(passed=1)
    args = (*common, "--batchperf-set", "slowdown=0.3")
    result = run_sim(p, *args)
    case = _results(p)["cases"]["test_suite.py::test_sweep[B2-static]"]
    assert case["verdict"] == "inconclusive"
    assert [r["extension"] for r in case["runs"]] == [False, True, True]
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*InconclusiveWarning*inconclusive against its reference*",
            "*beyond tolerance but within the noise*",
        ]
    )
    run_sim(p, *args, "--batchperf-strict").assert_outcomes(failed=1)


def test_ini_keys_and_marker_override(sim_project):
    suite = """
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed
WL = WorkloadSpec(num_requests=8, prompt=fixed(8), output=fixed(8))

@pytest.mark.batchperf(rounds=4, tolerance={"output_tok_s": 80, "*": 80}, batch_sizes=[4])
def test_loose(batchperf, batch_size):
    batchperf.run(WL, "continuous", batch_size)

def test_default(batchperf, batch_size):
    batchperf.run(WL, "continuous", batch_size)
"""
    ini = '\n[tool.pytest.ini_options]\nbatchperf_rounds = "3"\nbatchperf_batch_sizes = "2"\n'
    p = sim_project(suite=suite, ini=ini)
    common = ("-p", "no:cacheprovider", "--batchperf-profile", "sim", "--benchmark-disable")
    res = save_jobs(p, run=lambda p, *a: p.runpytest(*common, *a))
    res.assert_outcomes(passed=2)
    cases = _results(p)["cases"]
    rounds = {
        cid: [len(r) for r in c["metrics"]["output_tok_s"]["rounds"]] for cid, c in cases.items()
    }
    assert rounds == {
        "test_suite.py::test_default[B2]": [3] * 5,  # 5 runs (a save) of 3 rounds
        "test_suite.py::test_loose[B4]": [4] * 5,
    }
    # 50 % slower: beyond the 10 % default, inside the marker's 80 %.
    res = p.runpytest(
        "-p",
        "no:cacheprovider",
        "--batchperf-profile",
        "sim",
        "--benchmark-disable",
        "--batchperf-set",
        "slowdown=0.5",
    )
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["FAILED test_suite.py::test_default[[]B2[]]*"])


def test_pytest_benchmark_json_keeps_working(sim_project, tmp_path):
    p = sim_project()
    out = tmp_path / "bench.json"
    res = p.runpytest(
        "-p",
        "no:cacheprovider",
        "--batchperf-profile",
        "sim",
        "--batchperf-batch-sizes",
        "2",
        "-k",
        "continuous",
        f"--benchmark-json={out}",
    )
    res.assert_outcomes(passed=1, deselected=1)
    [bench] = json.loads(out.read_text())["benchmarks"]
    assert bench["stats"]["rounds"] == 5
    assert bench["extra_info"]["strategy"] == "continuous"
    assert bench["extra_info"]["output_tok_s"] > 0
    assert bench["extra_info"]["batchperf_verdict"] == "new"


def test_report_none_writes_nothing(sim_project):
    p = sim_project()
    run_sim(p, "--batchperf-report", "none").assert_outcomes(passed=4)
    assert not (p.path / "reports").exists()


def test_xdist_workers_results_are_merged(sim_project):
    pytest.importorskip("xdist")
    p = sim_project()
    result = run_sim(p, "-n", "2", "--batchperf-save")
    result.assert_outcomes(passed=4)
    assert len(_results(p)["cases"]) == 4
    [path] = _baseline_files(p)
    assert len(json.loads(path.read_text())["cases"]) == 4


def test_profile_sizes_rounds_sets_sweep_and_tolerances(sim_project):
    """A GPU-style profile: min_waves grows each round to waves of B, batch_sizes is its
    sweep, and its tolerance sits under the user's flag."""
    ini = 'min_waves = 4\nbatch_sizes = [2, 8]\ntolerance = { output_tok_s = 80, "*" = 80 }\n'
    p = sim_project(noise=0.0, ini="")
    p.makefile(".toml", pyproject=SIM_PROFILE.format(noise=0.0) + ini)
    common = ("-p", "no:cacheprovider", "--batchperf-profile", "sim", "--benchmark-disable")
    save_jobs(p, run=lambda p, *a: p.runpytest(*common, *a)).assert_outcomes(passed=4)
    cases = _results(p)["cases"]
    sizes = {cid: c["params"]["workload"]["num_requests"] for cid, c in cases.items()}
    assert sizes == {
        "test_suite.py::test_sweep[B2-static]": 16,  # the suite's 16 > 4 x 2
        "test_suite.py::test_sweep[B2-continuous]": 16,
        "test_suite.py::test_sweep[B8-static]": 32,  # 4 waves of 8
        "test_suite.py::test_sweep[B8-continuous]": 32,
    }
    assert _results(p)["gate"]["profile_tolerances"]["output_tok_s"] == 0.8
    # 50 % slower: inside the profile's 80 % ...
    p.runpytest(*common, "--batchperf-set", "slowdown=0.5").assert_outcomes(passed=4)
    # ... but the user's flag wins over the profile.
    res = p.runpytest(*common, "--batchperf-set", "slowdown=0.5", "--batchperf-tolerance", "*=10")
    res.assert_outcomes(failed=4)
    # The flag's sweep wins over the profile's.
    p.runpytest(*common, "--batchperf-batch-sizes", "4").assert_outcomes(passed=2)


def test_bad_profile_sizing_is_one_line(sim_project):
    p = sim_project()
    p.makefile(".toml", pyproject=SIM_PROFILE.format(noise=0.0) + "batch_sizes = [0, 8]\n")
    res = p.runpytest("-p", "no:cacheprovider", "--batchperf-profile", "sim")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*profile 'sim': batch_sizes must be a list of integers >= 1*"])
    assert "Traceback" not in res.stdout.str() + res.stderr.str()
