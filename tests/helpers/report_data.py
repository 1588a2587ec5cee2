"""Runs for report and CLI tests, built from a recorded run: real rounds measured by the
llama.cpp engine (tests/data/schema1-results.json, a schema-1 run: one run per case), judged again here against baselines made from them, scaled where a test needs
a slowdown, and spread over several runs where a test needs the between-run statistics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pytest_batchperf.judge.catalog import Kind, lookup
from pytest_batchperf.judge.gate import GatePolicy, compare_runs
from pytest_batchperf.judge.results import CaseResult, RunInfo, RunResults

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tests" / "data" / "schema1-results.json"
HOSTILE = "<script>alert(1)</script>"
# Runs only if escaping failed; the browser test checks the title is untouched.
TITLE_PAYLOAD = (
    "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
)


def example() -> RunResults:
    return RunResults.from_dict(json.loads(EXAMPLE.read_text()))


def several_runs(run: RunResults, n: int = 5) -> RunResults:
    """``run`` with each case's one run repeated as ``n`` runs, deterministically: run j's
    rounds are the measured rounds scaled by a factor spread evenly around 1 (by 1 to 3 %,
    case by case), as fresh engine processes would differ. Counts are left exact."""
    cases = {}
    for i, (case_id, case) in enumerate(sorted(run.cases.items())):
        spread = 0.01 * (1 + i % 3)
        factors = [1 + spread * (2 * j / (n - 1) - 1) if n > 1 else 1.0 for j in range(n)]
        metrics = {}
        for name, m in case.metrics.items():
            spec = lookup(name)
            timed = spec is not None and spec.judged and spec.kind is Kind.TIMED
            rounds = m.rounds
            metrics[name] = replace(
                m, runs=tuple(tuple(x * (f if timed else 1.0) for x in rounds) for f in factors)
            )
        cases[case_id] = replace(
            case, metrics=metrics, runs=tuple(RunInfo(slot=j + 1) for j in range(n))
        )
    return replace(run, cases=cases)


def as_baseline(run: RunResults, jobs: int = 1) -> RunResults:
    """``run`` as a baseline whose runs came from ``jobs`` save jobs (as near equal as
    the runs allow; one job for one run)."""
    cases = {}
    for cid, case in run.cases.items():
        metrics = {}
        for name, m in case.metrics.items():
            n, k = len(m.runs), min(jobs, len(m.runs))
            sizes = tuple(n // k + (i < n % k) for i in range(k)) if k > 1 else ()
            metrics[name] = replace(m, jobs=sizes)
        cases[cid] = replace(case, metrics=metrics)
    return replace(run, kind="baseline", cases=cases)


def slowed(run: RunResults, case_id: str, factor: float) -> RunResults:
    """``run`` with one case's rate metrics divided by ``factor`` and its times multiplied."""
    case = run.cases[case_id]
    metrics = {}
    for name, m in case.metrics.items():
        scale = {"1/s": 1 / factor, "ms": factor}.get(m.unit, 1.0)
        metrics[name] = replace(m, runs=tuple(tuple(x * scale for x in r) for r in m.runs))
    return replace(run, cases={**run.cases, case_id: replace(case, metrics=metrics)})


def judged(current: RunResults, baseline: RunResults, baseline_environment=None) -> RunResults:
    run = compare_runs(current, baseline, GatePolicy(), "baselines/x/default.json")
    if baseline_environment is not None:
        run = replace(run, baseline_environment=baseline_environment)
    return run


def hostile(run: RunResults) -> RunResults:
    """The run with a case id, suite, model name and warning that are markup."""
    first_id = sorted(run.cases)[0]
    case = run.cases[first_id]
    bad_id = f"suites/test_x.py::test_{HOSTILE}[B1]"
    bad_case = replace(
        case, case_id=bad_id, suite=f"test_x::test_{HOSTILE}", warnings=(TITLE_PAYLOAD,)
    )
    crashed_id = f"suites/test_x.py::test_crash[{HOSTILE}]"
    crashed = CaseResult(
        crashed_id, "test_x::test_crash", case.spec, error=f"engine crashed: {TITLE_PAYLOAD}"
    )
    env = {
        **run.environment,
        "engine": {**run.environment.get("engine", {}), "model": TITLE_PAYLOAD},
    }
    return replace(
        run,
        cases={**run.cases, bad_id: bad_case, crashed_id: crashed},
        environment=env,
        profile=f"default{HOSTILE}",
    )
