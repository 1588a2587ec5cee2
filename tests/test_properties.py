"""Property-based tests (hypothesis) of the decision rule and the baseline loader."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_batchperf import baseline
from pytest_batchperf.catalog import METRICS, Direction, Kind
from pytest_batchperf.decision import Verdict, compare
from pytest_batchperf.results import CaseResult, MetricSamples, RunResults

TIMED = sorted(n for n, m in METRICS.items() if m.kind is Kind.TIMED and m.direction is not Direction.INFO)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(positive, min_size=1, max_size=12)
metric = st.sampled_from(TIMED).map(METRICS.get)
any_float = st.floats(allow_nan=True, allow_infinity=True) | st.just(0.0)


def adverse(spec, k: float) -> float:
    """A factor that makes ``spec`` worse by (1 + k) in its own direction."""
    return 1 / (1 + k) if spec.direction is Direction.UP else 1 + k


@SETTINGS
@given(metric, samples, st.floats(min_value=-0.98, max_value=0.98))
def test_a_change_inside_tolerance_never_regresses(spec, base, fraction):
    """Every sample scaled by the same factor, with the ratio inside the tolerance: the
    medians' ratio is that factor, so however strong the evidence it is not a regression."""
    factor = 1 + fraction * spec.tolerance
    verdict = compare(spec, base, [x * factor for x in base]).verdict
    assert verdict is not Verdict.REGRESSED


@SETTINGS
@given(metric, samples, samples, st.integers(min_value=-20, max_value=20))
def test_units_do_not_matter(spec, base, cur, power):
    """Scaling both sides by the same power of two (exact in floating point) is a change
    of units: the verdict stays, unless the p-value sits on alpha to rounding error."""
    c = 2.0 ** power
    a = compare(spec, base, cur)
    b = compare(spec, [x * c for x in base], [x * c for x in cur])
    assume(a.p_value is None or abs(a.p_value - 0.01) > 1e-9)
    assert a.verdict is b.verdict


spread = st.lists(st.floats(min_value=-0.2, max_value=0.2), min_size=1, max_size=10)


@SETTINGS
@given(metric, positive, spread, spread, st.floats(0.0, 2.0), st.floats(min_value=0.0, max_value=3.0))
def test_making_a_regression_worse_keeps_it_a_regression(spec, centre, eb, ec, shift, k):
    base = [centre * (1 + e) for e in eb]
    cur = [centre * adverse(spec, shift) * (1 + e) for e in ec]
    first = compare(spec, base, cur)
    assume(first.verdict is Verdict.REGRESSED)
    worse = compare(spec, base, [x * adverse(spec, k) for x in cur])
    assert worse.verdict is Verdict.REGRESSED


@SETTINGS
@given(metric, samples)
def test_a_run_equal_to_its_baseline_passes(spec, base):
    assert compare(spec, base, list(base)).verdict is Verdict.PASS


@SETTINGS
@given(st.sampled_from(sorted(METRICS)).map(METRICS.get), st.lists(any_float, max_size=6),
       st.lists(any_float, max_size=6), st.floats(min_value=0, max_value=5))
def test_any_samples_give_a_verdict_not_an_exception(spec, base, cur, tolerance):
    c = compare(spec, base, cur, tolerance)
    assert isinstance(c.verdict, Verdict)
    assert c.line()  # the failure message can always be written


# ------------------------------------------------------------------ baselines

case_ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
metric_samples = st.lists(st.floats(min_value=1e-6, max_value=1e9) | st.none(), min_size=1, max_size=6)


@st.composite
def runs(draw) -> RunResults:
    cases = {}
    for cid in draw(st.lists(case_ids, min_size=1, max_size=5, unique=True)):
        names = draw(st.lists(st.sampled_from(sorted(METRICS)), min_size=1, max_size=5, unique=True))
        metrics = {n: MetricSamples.build(n, [math.nan if x is None else x
                                              for x in draw(metric_samples)]) for n in names}
        cases[cid] = CaseResult(cid, suite="s", params={"batch_size": draw(st.integers(1, 512))},
                                metrics=metrics)
    return RunResults(profile=draw(st.sampled_from(["default", "my profile/x"])),
                      hardware_class="cpu-test", environment={"python": "3.12"}, cases=cases)


def _saved(run: RunResults, directory: str) -> Path:
    path = Path(directory) / "b.json"
    baseline.save(path, run)
    return path


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5)


@settings(max_examples=60, deadline=None)
@given(runs())
def test_saved_baselines_load_back(run):
    with tempfile.TemporaryDirectory() as d:
        loaded = baseline.load(_saved(run, d))
    assert set(loaded.cases) == set(run.cases)
    for cid, case in run.cases.items():
        got = loaded.cases[cid]
        assert set(got.metrics) == set(case.metrics)
        for name, m in case.metrics.items():
            assert all(map(_same, got.metrics[name].samples, m.samples))


@settings(max_examples=150, deadline=None)
@given(runs(), st.data())
def test_random_byte_corruption_is_a_baseline_error_or_a_valid_load(run, data):
    with tempfile.TemporaryDirectory() as d:
        path = _saved(run, d)
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            del raw[data.draw(st.integers(0, len(raw) - 1)):]  # truncated, as by a crash
        path.write_bytes(bytes(raw))
        try:
            loaded = baseline.load(path)
        except baseline.BaselineError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
    assert loaded is None or isinstance(loaded, RunResults)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


def _mutate(doc, data):
    """Replace one value somewhere in the JSON tree, or delete one key."""
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append((node, key))
        node = node[key]
    if not path:
        return data.draw(json_values)
    parent, key = path[-1]
    if isinstance(parent, dict) and data.draw(st.booleans()):
        del parent[key]
    else:
        parent[key] = data.draw(json_values)
    return doc


@settings(max_examples=200, deadline=None)
@given(runs(), st.data())
def test_a_file_that_fails_validation_is_never_half_read(run, data):
    """Either BaselineError, or every case and metric of the file, with all its samples."""
    with tempfile.TemporaryDirectory() as d:
        path = _saved(run, d)
        doc = _mutate(json.loads(path.read_text()), data)
        path.write_text(json.dumps(doc))
        try:
            loaded = baseline.load(path)
        except baseline.BaselineError:
            return
    cases = doc["cases"]
    assert set(loaded.cases) == set(cases)
    for cid, case in cases.items():
        assert set(loaded.cases[cid].metrics) == set(case["metrics"])
        for name, m in case["metrics"].items():
            assert len(loaded.cases[cid].metrics[name].samples) == len(m["samples"])


@pytest.mark.parametrize("junk", [b"", b"\x00" * 64, b"\xff\xfe{", b"[]", b"null", b"{}"])
def test_degenerate_files(tmp_path, junk):
    path = tmp_path / "b.json"
    path.write_bytes(junk)
    with pytest.raises(baseline.BaselineError, match="b.json"):
        baseline.load(path)


def test_saving_sorts_and_rounds(tmp_path):
    """The saved text is stable: the same run saved twice is the same bytes."""
    run = RunResults("p", "cpu", {}, {"b": CaseResult("b", metrics={"output_tok_s": MetricSamples.build(
        "output_tok_s", np.array([1.23456789, 2.0]))}), "a": CaseResult("a", metrics={
            "output_tok_s": MetricSamples.build("output_tok_s", [3.0])})})
    first = _saved(run, str(tmp_path)).read_text()
    second = _saved(run, str(tmp_path)).read_text()
    strip = [line for line in first.splitlines() if '"created"' not in line]
    assert strip == [line for line in second.splitlines() if '"created"' not in line]
    assert first.index('"a"') < first.index('"b"') and "1.23457" in first


WRONG_TYPES = [None, 5, "x", [1], {}]


def _valid_load_or_error(path: Path) -> None:
    try:
        loaded = baseline.load(path)
    except baseline.BaselineError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(loaded.environment, dict)
    for case in loaded.cases.values():
        assert isinstance(case.params, dict)
        assert all(isinstance(x, float) for m in case.metrics.values() for x in m.samples)


def test_every_field_with_a_wrong_type(tmp_path):
    """Each key of a valid file, top level and per case, replaced by each wrong type."""
    run = RunResults("p", "cpu", {"python": "3.12"}, {"a": CaseResult(
        "a", suite="s", params={"batch_size": 8},
        metrics={"output_tok_s": MetricSamples.build("output_tok_s", [1.0, 2.0])})})
    path = _saved(run, str(tmp_path))
    doc = json.loads(path.read_text())
    for where in (doc, doc["cases"]["a"], doc["cases"]["a"]["metrics"]["output_tok_s"]):
        for key in list(where):
            for value in WRONG_TYPES:
                original = where[key]
                where[key] = value
                path.write_text(json.dumps(doc))
                _valid_load_or_error(path)
                where[key] = original
