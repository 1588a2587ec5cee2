"""Baseline files: round trip, stable layout, atomic saves, clear errors."""

import json

import pytest

from pytest_batchperf import baseline
from pytest_batchperf.baseline import BaselineError
from pytest_batchperf.results import CaseResult, MetricSamples, RunResults


def _run(cases=None, **kw):
    cases = cases or {
        "suites/a.py::t[B8]": CaseResult(
            "suites/a.py::t[B8]", "a::t", {"batch_size": 8},
            {"output_tok_s": MetricSamples.build("output_tok_s", [101.0, 99.5, 100.25])}),
    }
    return RunResults(profile="default", hardware_class="cpu-x-2c",
                      environment={"python": "3.11"}, cases=cases, **kw)


def test_path_is_hardware_class_then_profile(tmp_path):
    p = baseline.baseline_path(tmp_path, "nvidia-h100-80gb-hbm3", "vllm-synthetic-1b")
    assert p == tmp_path / "nvidia-h100-80gb-hbm3" / "vllm-synthetic-1b.json"


def test_missing_baseline_is_none(tmp_path):
    assert baseline.load(tmp_path / "nope.json") is None


def test_round_trip_and_stable_text(tmp_path):
    path = tmp_path / "cpu" / "default.json"
    baseline.save(path, _run())
    loaded = baseline.load(path)
    case = loaded.cases["suites/a.py::t[B8]"]
    assert case.metrics["output_tok_s"].samples == (101.0, 99.5, 100.25)
    assert case.params == {"batch_size": 8}
    first = json.loads(path.read_text())
    baseline.save(path, _run())
    second = json.loads(path.read_text())
    first.pop("created"), second.pop("created")
    assert first == second
    assert list(tmp_path.rglob("*.tmp")) == []
    assert "verdict" not in path.read_text(), "baselines hold samples, not verdicts"


def test_save_merges_and_skips_errored_cases(tmp_path):
    path = tmp_path / "b.json"
    baseline.save(path, _run())
    other = {
        "suites/a.py::t[B16]": CaseResult("suites/a.py::t[B16]", metrics={
            "output_tok_s": MetricSamples.build("output_tok_s", [1.0, 2.0])}),
        "suites/a.py::t[B32]": CaseResult("suites/a.py::t[B32]", error="engine crashed"),
    }
    baseline.save(path, _run(cases=other))
    assert set(baseline.load(path).cases) == {"suites/a.py::t[B8]", "suites/a.py::t[B16]"}


@pytest.mark.parametrize("text, message", [
    ("{", "corrupt baseline (invalid JSON at line 1"),
    ("[]", "top level is not an object"),
    ('{"schema_version": "1"}', "no integer schema_version"),
    ('{"schema_version": 1, "profile": "p", "hardware_class": "h", "cases": {"c": {}}}',
     "case 'c' has no metrics object"),
    ('{"schema_version": 1, "profile": "p", "hardware_class": "h", '
     '"cases": {"c": {"metrics": {"m": {"samples": ["x"]}}}}}', "no list of numeric samples"),
    ('{"schema_version": 0, "profile": "p", "hardware_class": "h", "cases": {}}', "re-save"),
    ('{"schema_version": 2, "profile": "p", "hardware_class": "h", "cases": {}}', "newer"),
])
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
