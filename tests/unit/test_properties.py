"""Property-based tests (hypothesis) of the decision rule and the baseline loader."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pytest_batchperf.judge import baseline
from pytest_batchperf.judge.catalog import METRICS, Direction, Kind
from pytest_batchperf.judge.decision import Comparison, Verdict, compare
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunResults
from pytest_batchperf.judge.stats import Prior
from pytest_batchperf.workload import SLO, CaseSpec, Strategy, WorkloadSpec

TIMED = sorted(
    n for n, m in METRICS.items() if m.kind is Kind.TIMED and m.direction is not Direction.INFO
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
# A side of a comparison: 1-4 runs of 1-6 rounds each (one run of one round included).
run_lists = st.lists(st.lists(positive, min_size=1, max_size=6), min_size=1, max_size=4)
metric = st.sampled_from(TIMED).map(METRICS.get)
any_float = st.floats(allow_nan=True, allow_infinity=True) | st.just(0.0)
priors = st.none() | st.builds(
    Prior, st.floats(min_value=1e-12, max_value=10.0), st.floats(min_value=0.5, max_value=1000.0)
)


def adverse(spec, k: float) -> float:
    """A factor that makes ``spec`` worse by (1 + k) in its own direction."""
    return 1 / (1 + k) if spec.direction is Direction.UP else 1 + k


def scaled(runs, factor: float) -> list[list[float]]:
    return [[x * factor for x in r] for r in runs]


def on_an_edge(c: Comparison) -> bool:
    """The change sits on a tolerance edge (1x or the one-run 2x), or the p-value on alpha,
    to rounding error: there the verdict may flip with the last bit."""
    edges = [k * c.tolerance for k in (1, 2)]
    near_edge = any(abs(abs(c.change) - e) < 1e-9 for e in edges)
    near_alpha = (
        c.p_value is not None
        and c.alpha is not None
        and any(abs(c.p_value - a) < 1e-9 for a in (c.alpha, 1 - c.alpha))
    )
    return near_edge or near_alpha


@SETTINGS
@given(metric, run_lists, st.floats(min_value=-0.98, max_value=0.98))
def test_a_change_inside_tolerance_never_regresses(spec, base, fraction):
    """Every round of every run scaled by the same factor, with the ratio inside the
    tolerance: the ratio of the geometric means of the run summaries is that factor, so
    however strong the evidence it is not a regression."""
    factor = 1 + fraction * spec.tolerance
    verdict = compare(spec, base, scaled(base, factor)).verdict
    assert verdict is not Verdict.REGRESSED
    # Nor in A/B mode, where run i of each side is a pair.
    assert compare(spec, base, scaled(base, factor), paired=True).verdict is not Verdict.REGRESSED


@SETTINGS
@given(metric, run_lists, run_lists, st.integers(min_value=-20, max_value=20), st.booleans())
def test_units_do_not_matter(spec, base, cur, power, paired):
    """Scaling both sides by the same power of two (exact in floating point) is a change
    of units: the verdict stays, unless the change sits on a tolerance edge or the p-value
    on alpha to rounding error."""
    c = 2.0**power
    a = compare(spec, base, cur, paired=paired)
    b = compare(spec, scaled(base, c), scaled(cur, c), paired=paired)
    assume(not on_an_edge(a) and not on_an_edge(b))
    assert a.verdict is b.verdict


spread = st.lists(
    st.lists(st.floats(min_value=-0.2, max_value=0.2), min_size=1, max_size=6),
    min_size=1,
    max_size=4,
)


@SETTINGS
@given(
    metric,
    positive,
    spread,
    spread,
    st.floats(0.0, 2.0),
    st.floats(min_value=0.0, max_value=3.0),
    priors,
)
def test_making_a_regression_worse_keeps_it_a_regression(spec, centre, eb, ec, shift, k, prior):
    base = [[centre * (1 + e) for e in run] for run in eb]
    cur = [[centre * adverse(spec, shift) * (1 + e) for e in run] for run in ec]
    first = compare(spec, base, cur, prior=prior)
    if first.verdict is not Verdict.REGRESSED:
        return  # most draws: too few runs for a prediction interval to be sure
    worse = compare(spec, base, scaled(cur, adverse(spec, k)), prior=prior)
    assert worse.verdict is Verdict.REGRESSED


@SETTINGS
@given(metric, run_lists, st.booleans())
def test_a_run_equal_to_its_baseline_passes(spec, base, paired):
    c = compare(spec, base, [list(r) for r in base], paired=paired)
    assert c.verdict is Verdict.PASS and c.change == pytest.approx(0.0, abs=1e-12)


# A test's share of the budget: 0.01 per suite run shared by cases, families and looks.
alphas = st.sampled_from([0.05, 0.01, 1e-4, 1e-6])


@SETTINGS
@given(
    st.sampled_from(sorted(METRICS)).map(METRICS.get),
    st.lists(st.lists(any_float, max_size=6), max_size=4),
    st.lists(st.lists(any_float, max_size=6), max_size=4),
    st.floats(min_value=0, max_value=5),
    priors,
    st.booleans(),
    alphas,
)
# Two runs against one, 10 % apart, at a suite's per-test alpha: a wide interval (df = 1).
@example(METRICS["output_tok_s"], [[1000.0], [1100.0]], [[1000.0]], 0.1, None, False, 1e-6)
def test_any_samples_give_a_verdict_not_an_exception(
    spec, base, cur, tolerance, prior, paired, alpha
):
    c = compare(spec, base, cur, tolerance, alpha=alpha, prior=prior, paired=paired)
    assert isinstance(c.verdict, Verdict)
    assert c.line()  # the failure message can always be written
    assert Comparison.from_dict(json.loads(json.dumps(c.to_dict()))).verdict is c.verdict


# ------------------------------------------------------------------ baselines

case_ids = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
)
metric_rounds = st.lists(
    st.floats(min_value=1e-6, max_value=1e9) | st.none(), min_size=1, max_size=6
)
metric_runs = st.lists(metric_rounds, min_size=1, max_size=4)
case_specs = st.builds(
    CaseSpec,
    st.builds(
        WorkloadSpec,
        num_requests=st.integers(1, 64),
        seed=st.integers(0, 99),
        name=st.text(max_size=8),
    ),
    st.sampled_from(Strategy),
    st.integers(1, 512),
    st.just(SLO()) | st.builds(SLO, st.floats(1, 1e4), st.none() | st.floats(1, 1e3)),
)


@st.composite
def runs(draw) -> RunResults:
    cases = {}
    for cid in draw(st.lists(case_ids, min_size=1, max_size=5, unique=True)):
        names = draw(
            st.lists(st.sampled_from(sorted(METRICS)), min_size=1, max_size=5, unique=True)
        )
        metrics = {
            n: MetricRuns.build(
                n, [[math.nan if x is None else x for x in r] for r in draw(metric_runs)]
            )
            for n in names
        }
        if draw(st.booleans()):
            cases[cid] = CaseResult(cid, suite="s", spec=draw(case_specs), metrics=metrics)
        else:  # a custom test's parameters, not a case spec
            cases[cid] = CaseResult(
                cid,
                suite="s",
                metrics=metrics,
                raw_params={"batch_size": draw(st.integers(1, 512))},
            )
    return RunResults(
        profile=draw(st.sampled_from(["default", "my profile/x"])),
        hardware_class="cpu-test",
        environment={"python": "3.12"},
        cases=cases,
    )


def _saved(run: RunResults, directory: str) -> Path:
    path = Path(directory) / "b.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    baseline.save(path, run)
    return path


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5)


@settings(max_examples=60, deadline=None)
@given(runs())
def test_saved_baselines_load_back(run):
    """A baseline keeps each run's summary (the median of its rounds), 6 digits; a baseline
    of a single run keeps that run's rounds."""
    with tempfile.TemporaryDirectory() as d:
        loaded = baseline.load(_saved(run, d))
    assert set(loaded.cases) == set(run.cases)
    for cid, case in run.cases.items():
        got = loaded.cases[cid]
        assert got.params == case.params and got.spec == case.spec
        assert set(got.metrics) == set(case.metrics)
        for name, m in case.metrics.items():
            g = got.metrics[name]
            assert (g.unit, g.direction) == (m.unit, m.direction)
            assert len(g.runs) == len(m.runs)
            assert all(len(r) == 1 for r in g.runs) or len(m.runs) == 1
            assert all(map(_same, g.summaries, m.summaries))


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
            del raw[data.draw(st.integers(0, len(raw) - 1)) :]  # truncated, as by a crash
        path.write_bytes(bytes(raw))
        try:
            loaded = baseline.load(path)
        except baseline.BaselineError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
    assert loaded is None or isinstance(loaded, RunResults)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _mutate(doc, data):
    """Replace one value somewhere in the JSON tree, or delete one key."""
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(
            st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
        )
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
    """Either BaselineError, or every case and metric of the file, with all its runs."""
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
            got = loaded.cases[cid].metrics[name]
            if "runs" in m:  # a baseline: one summary per run
                assert got.summaries == pytest.approx(
                    [math.nan if x is None else x for x in m["runs"]], nan_ok=True
                )
            elif "rounds" in m:
                assert len(got.runs) == len(m["rounds"])
            else:  # schema 1: one run, its rounds
                assert len(got.runs) == 1 and len(got.rounds) == len(m["samples"])


@pytest.mark.parametrize("junk", [b"", b"\x00" * 64, b"\xff\xfe{", b"[]", b"null", b"{}"])
def test_degenerate_files(tmp_path, junk):
    path = tmp_path / "b.json"
    path.write_bytes(junk)
    with pytest.raises(baseline.BaselineError, match="b.json"):
        baseline.load(path)


def test_saving_sorts_and_rounds(tmp_path):
    """The saved text is stable: the same run saved twice is the same bytes."""
    run = RunResults(
        "p",
        "cpu",
        {},
        {
            "b": CaseResult(
                "b",
                metrics={
                    "output_tok_s": MetricRuns.build(
                        "output_tok_s", [np.array([1.23456789]), np.array([2.0, 3.0])]
                    )
                },
            ),
            "a": CaseResult(
                "a", metrics={"output_tok_s": MetricRuns.build("output_tok_s", [[3.0]])}
            ),
        },
    )
    first = _saved(run, str(tmp_path / "1")).read_text()
    second = _saved(run, str(tmp_path / "2")).read_text()
    strip = [line for line in first.splitlines() if '"created"' not in line]
    assert strip == [line for line in second.splitlines() if '"created"' not in line]
    assert first.index('"a"') < first.index('"b"') and "1.23457" in first
    assert json.loads(first)["cases"]["b"]["metrics"]["output_tok_s"]["runs"] == [1.23457, 2.5]


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
        assert all(isinstance(x, float) for m in case.metrics.values() for x in m.rounds)
        assert all(isinstance(x, float) for m in case.metrics.values() for x in m.summaries)


def test_every_field_with_a_wrong_type(tmp_path):
    """Each key of a valid file, top level, per case, in its parameters and per metric,
    replaced by each wrong type."""
    spec = CaseSpec(WorkloadSpec(num_requests=8), Strategy.CONTINUOUS, 8, SLO(ttft_ms=500.0))
    run = RunResults(
        "p",
        "cpu",
        {"python": "3.12"},
        {
            "a": CaseResult(
                "a",
                suite="s",
                spec=spec,
                metrics={"output_tok_s": MetricRuns.build("output_tok_s", [[1.0, 2.0], [3.0]])},
            )
        },
    )
    path = _saved(run, str(tmp_path))
    doc = json.loads(path.read_text())
    case = doc["cases"]["a"]
    for where in (
        doc,
        case,
        case["params"],
        case["params"]["workload"],
        case["metrics"]["output_tok_s"],
    ):
        for key in list(where):
            for value in WRONG_TYPES:
                original = where[key]
                where[key] = value
                path.write_text(json.dumps(doc))
                _valid_load_or_error(path)
                where[key] = original
