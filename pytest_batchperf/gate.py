"""Judging cases and whole runs against a baseline (used by the plugin and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from .catalog import METRICS, Direction, MetricSpec
from .decision import DEFAULT_ALPHA, Comparison, Verdict, compare
from .results import CaseResult, RunResults


@dataclass(frozen=True)
class GatePolicy:
    tolerances: Mapping[str, float] = field(default_factory=dict)  # metric or "*" -> fraction
    alpha: float = DEFAULT_ALPHA
    strict: bool = False  # inconclusive fails too
    # The profile's own tolerances (fitted to its hardware's noise): below the user's
    # choices, above the catalog's defaults.
    profile_tolerances: Mapping[str, float] = field(default_factory=dict)

    def tolerance(self, metric: MetricSpec) -> float:
        for table in (self.tolerances, self.profile_tolerances):
            for key in (metric.name, "*"):
                if key in table:
                    return table[key]
        return metric.tolerance

    def merged(self, overrides: Mapping[str, float]) -> "GatePolicy":
        return replace(self, tolerances={**self.tolerances, **overrides})

    def fails(self, verdict: Verdict) -> bool:
        return verdict in (Verdict.REGRESSED, Verdict.ERROR) or (
            self.strict and verdict is Verdict.INCONCLUSIVE
        )


def _spec_for(name: str, current) -> MetricSpec:
    # Metrics unknown to this version (from a newer baseline) are shown, never judged.
    return METRICS.get(name) or MetricSpec(name, current.unit, Direction.INFO, 0.0)


def compare_case(case: CaseResult, base: CaseResult | None, policy: GatePolicy) -> CaseResult:
    if case.error is not None:
        return replace(case, verdict=Verdict.ERROR, comparisons=())
    comparisons: list[Comparison] = []
    for name in sorted(case.metrics):
        cur = case.metrics[name]
        m = _spec_for(name, cur)
        if base is None or name not in base.metrics:
            comparisons.append(
                Comparison(name, cur.unit, cur.direction, Verdict.NEW, float("nan"), cur.median,
                           float("nan"), None, None, None, policy.tolerance(m), 0,
                           len(cur.samples), "no baseline")
            )
            continue
        comparisons.append(
            compare(m, base.metrics[name].samples, cur.samples, policy.tolerance(m), policy.alpha)
        )
    return case.with_comparisons(tuple(comparisons))


def compare_runs(current: RunResults, baseline: RunResults | None, policy: GatePolicy,
                 baseline_path: str | None = None) -> RunResults:
    """Judge every case of ``current``; baseline cases it lacks are ``missing``."""
    base_cases = baseline.cases if baseline else {}
    cases = {cid: compare_case(c, base_cases.get(cid), policy) for cid, c in current.cases.items()}
    missing = tuple(sorted(set(base_cases) - set(current.cases)))
    return replace(
        current,
        cases=cases,
        missing=missing,
        baseline_path=baseline_path,
        baseline_environment=dict(baseline.environment) if baseline else None,
    )


def failure_message(case: CaseResult, policy: GatePolicy) -> str:
    bad = [c for c in case.comparisons if policy.fails(c.verdict)]
    head = f"{case.case_id}: {len(bad)} metric(s) {case.verdict.value} against baseline"
    return "\n".join([head] + ["  " + c.line() for c in bad])
