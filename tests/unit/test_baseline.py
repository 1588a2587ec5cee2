"""Baseline files: round trip, stable layout, atomic saves, clear errors."""

import json

import pytest

from pytest_batchperf import SCHEMA_VERSION
from pytest_batchperf.judge import baseline
from pytest_batchperf.judge.baseline import BaselineError
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunResults
from pytest_batchperf.workload import CaseSpec, Strategy, WorkloadSpec

SPEC = CaseSpec(WorkloadSpec(num_requests=16, seed=3), Strategy.STATIC, 8)


def _run(cases=None, **kw):
    cases = cases or {
        "suites/a.py::t[B8]": CaseResult(
            "suites/a.py::t[B8]",
            "a::t",
            SPEC,
            {
                "output_tok_s": MetricRuns.build(
                    "output_tok_s", [[101.0, 99.5, 100.25], [98.0, 97.0, 99.0], [102.123456789]]
                )
            },
        ),
    }
    return RunResults(
        profile="default",
        hardware_class="cpu-x-2c",
        cases=cases,
        **{"environment": {"python": "3.11"}, **kw},
    )


def test_a_save_of_the_same_setup_appends_a_job_and_keeps_the_last_n(tmp_path):
    path = tmp_path / "cpu" / "default.json"
    for _ in range(4):
        baseline.save(path, _run(), keep_jobs=3)
    m = baseline.load(path).cases["suites/a.py::t[B8]"].metrics["output_tok_s"]
    assert m.jobs == (3, 3, 3) and len(m.runs) == 9
    assert baseline.load(path).saved_jobs == 3
    # an upgrade (other packages) starts the history again
    baseline.save(path, _run(environment={"python": "3.11", "packages": {"vllm": "0.27"}}))
    m = baseline.load(path).cases["suites/a.py::t[B8]"].metrics["output_tok_s"]
    assert m.jobs == () and len(m.runs) == 3


def test_path_is_hardware_class_then_profile(tmp_path):
    p = baseline.baseline_path(tmp_path, "nvidia-h100-80gb-hbm3", "vllm-synthetic-1b")
    assert p == tmp_path / "nvidia-h100-80gb-hbm3" / "vllm-synthetic-1b.json"


def test_missing_baseline_is_none(tmp_path):
    assert baseline.load(tmp_path / "nope.json") is None


def test_round_trip_and_stable_text(tmp_path):
    path = tmp_path / "cpu" / "default.json"
    baseline.save(path, _run())
    loaded = baseline.load(path)
    assert loaded.kind == "baseline"
    case = loaded.cases["suites/a.py::t[B8]"]
    # Runs, not rounds, are the evidence: a baseline keeps each run's summary (6 digits).
    assert case.metrics["output_tok_s"].runs == ((100.25,), (98.0,), (102.123,))
    assert case.spec == SPEC and case.params == SPEC.to_dict()
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    first = json.loads(path.read_text())
    baseline.save(path, _run(), keep_jobs=1)
    second = json.loads(path.read_text())
    first.pop("created"), second.pop("created")
    assert first == second
    assert list(tmp_path.rglob("*.tmp")) == []
    assert "verdict" not in path.read_text(), "baselines hold run summaries, not verdicts"
    assert '"rounds"' not in path.read_text()


def test_schema_1_files_load_as_one_run(tmp_path):
    """A baseline written before runs (its rounds as "samples") is one run per case."""
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "profile": "default",
                "hardware_class": "cpu",
                "cases": {
                    "c": {
                        "params": {"batch_size": 8},
                        "metrics": {
                            "output_tok_s": {
                                "unit": "1/s",
                                "direction": "up",
                                "samples": [101.0, 99.5, None, 100.25],
                            }
                        },
                    }
                },
            }
        )
    )
    m = baseline.load(path).cases["c"].metrics["output_tok_s"]
    assert len(m.runs) == 1 and m.rounds[:2] == (101.0, 99.5) and m.median == 100.25
    assert baseline.load(path).cases["c"].params == {"batch_size": 8}
    # Saved again, it is today's schema; a single run keeps its rounds (its only noise evidence).
    saved = baseline.save(tmp_path / "c.json", baseline.load(path))
    assert saved.cases["c"].metrics["output_tok_s"].median == 100.25
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["cases"]["c"]["metrics"]["output_tok_s"]["rounds"] == [[101.0, 99.5, None, 100.25]]


def test_schema_2_files_load_their_runs(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": 2,
                "profile": "default",
                "hardware_class": "cpu",
                "cases": {
                    "c": {
                        "params": SPEC.to_dict(),
                        "metrics": {
                            "output_tok_s": {
                                "unit": "1/s",
                                "direction": "up",
                                "runs": [101.0, 99.5, None],
                            }
                        },
                    }
                },
            }
        )
    )
    case = baseline.load(path).cases["c"]
    assert case.spec == SPEC
    assert case.metrics["output_tok_s"].summaries[:2] == (101.0, 99.5)
    assert len(case.metrics["output_tok_s"].runs) == 3


def test_a_results_file_keeps_every_round_and_loads_as_a_run(tmp_path):
    """results.json has the baseline's layout but keeps each run's rounds (and its kind)."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_run().to_dict()))
    loaded = baseline.load(path)
    assert loaded.kind == "run"
    assert loaded.cases["suites/a.py::t[B8]"].metrics["output_tok_s"].runs == (
        (101.0, 99.5, 100.25),
        (98.0, 97.0, 99.0),
        (102.123,),
    )


def test_save_merges_and_skips_errored_cases(tmp_path):
    path = tmp_path / "b.json"
    baseline.save(path, _run())
    other = {
        "suites/a.py::t[B16]": CaseResult(
            "suites/a.py::t[B16]",
            metrics={"output_tok_s": MetricRuns.build("output_tok_s", [[1.0, 2.0]])},
        ),
        "suites/a.py::t[B32]": CaseResult("suites/a.py::t[B32]", error="engine crashed"),
    }
    baseline.save(path, _run(cases=other))
    assert set(baseline.load(path).cases) == {"suites/a.py::t[B8]", "suites/a.py::t[B16]"}


def test_a_save_that_measured_nothing_leaves_the_file_and_says_so(tmp_path):
    crashed = {"suites/a.py::t[B8]": CaseResult("suites/a.py::t[B8]", error="engine crashed")}
    with pytest.raises(baseline.BaselineError, match="no case of this run measured anything"):
        baseline.save(tmp_path / "new.json", _run(cases=crashed))
    assert not any(tmp_path.iterdir())
    path = tmp_path / "b.json"
    baseline.save(path, _run())
    before = path.read_text()
    with pytest.raises(baseline.BaselineError):
        baseline.save(path, _run(cases=crashed))
    assert path.read_text() == before


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "corrupt baseline (invalid JSON at line 1"),
        ("[]", "top level is not an object"),
        ('{"schema_version": "1"}', "no integer schema_version"),
        (
            '{"schema_version": 1, "profile": "p", "hardware_class": "h", "cases": {"c": {}}}',
            "case 'c' has no metrics object",
        ),
        (
            '{"schema_version": 1, "profile": "p", "hardware_class": "h", '
            '"cases": {"c": {"metrics": {"m": {"samples": ["x"]}}}}}',
            "has no runs of numeric values",
        ),
        (
            '{"schema_version": 2, "profile": "p", "hardware_class": "h", '
            '"cases": {"c": {"metrics": {"m": {"runs": [1.0, "x"]}}}}}',
            "has no runs of numeric values",
        ),
        (
            '{"schema_version": 2, "profile": "p", "hardware_class": "h", '
            '"cases": {"c": {"metrics": {"m": {"rounds": [1.0]}}}}}',
            "has no runs of numeric values",
        ),
        ('{"schema_version": 0, "profile": "p", "hardware_class": "h", "cases": {}}', "re-save"),
        ('{"schema_version": 99, "profile": "p", "hardware_class": "h", "cases": {}}', "newer"),
    ],
)
def test_bad_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "b.json"
    path.write_text(text)
    with pytest.raises(BaselineError) as err:
        baseline.load(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_save_refuses_to_overwrite_a_corrupt_file(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("{garbage")
    with pytest.raises(BaselineError, match="corrupt"):
        baseline.save(path, _run())
    assert path.read_text() == "{garbage"


def test_binary_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BaselineError, match="not UTF-8"):
        baseline.load(path)


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    """mkstemp's private 0600 must not leak into reports and baselines others read."""
    import os

    from pytest_batchperf.atomic import write_atomic

    old = os.umask(0o027)  # not the usual 022: the mask must really be read
    try:
        write_atomic(tmp_path / "a.json", "{}")
        (tmp_path / "b.json").write_text("{}")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.json": 0o640, "b.json": 0o640}
