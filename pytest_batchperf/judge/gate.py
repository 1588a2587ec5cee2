"""Judging cases and whole runs (used by the plugin and the CLI).

The promise is per run of the whole suite: at most ``alpha`` of A/A runs raise a false
alarm. The budget is shared by Bonferroni, which holds whatever the dependence between
tests: equally among the run's cases, then among each case's metric families (metrics of
one family are one measurement, ``catalog``), then among the looks a case may take (its
planned runs, and each run added while it stays inconclusive). In A/B mode half of it goes
to the suite-wide tests (``suite_effects``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import DEFAULT_ALPHA, DEFAULT_POWER, stats
from .catalog import Direction, Kind, MetricSpec, lookup
from .decision import (
    Comparison,
    Verdict,
    compare,
    log_ratios,
    summaries,
)
from .results import CaseResult, MetricRuns, RunResults


@dataclass(frozen=True)
class GatePolicy:
    tolerances: Mapping[str, float] = field(default_factory=dict)  # metric or "*" -> fraction
    alpha: float = DEFAULT_ALPHA  # false alarms per run of the whole suite
    power: float = DEFAULT_POWER  # for the smallest detectable change
    strict: bool = False  # inconclusive fails too
    # The profile's own tolerances (fitted to its hardware's noise): below the user's
    # choices, above the catalog's defaults.
    profile_tolerances: Mapping[str, float] = field(default_factory=dict)
    cases: int = 1  # cases the run judges
    looks: int = 1  # 1 + the runs an inconclusive case may add
    paired: bool = False  # A/B mode: its tighter default tolerances

    def tolerance(self, metric: MetricSpec) -> float:
        for table in (self.tolerances, self.profile_tolerances):
            for key in (metric.name, "*"):
                if key in table:
                    return table[key]
        return metric.ab_tolerance if self.paired else metric.tolerance

    def merged(self, overrides: Mapping[str, float]) -> GatePolicy:
        return replace(self, tolerances={**self.tolerances, **overrides})

    def fails(self, verdict: Verdict) -> bool:
        return verdict in (Verdict.REGRESSED, Verdict.ERROR) or (
            self.strict and verdict is Verdict.INCONCLUSIVE
        )

    @property
    def case_alpha(self) -> float:
        """The cases' part of the run's false-alarm budget (A/B: the suite tests get half)."""
        return self.alpha / 2 if self.paired else self.alpha

    def test_alpha(self, families: int) -> float:
        """One case test's share of the run's false-alarm budget."""
        return self.case_alpha / max(1, self.cases) / max(1, families) / max(1, self.looks)

    def to_dict(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GatePolicy:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def spec_for(name: str, current: MetricRuns) -> MetricSpec:
    # Metrics unknown to this version (from a newer baseline) are shown, never judged.
    return lookup(name) or MetricSpec(name, current.unit, Direction.INFO, 0.0)


def _log_variance(runs: MetricRuns) -> tuple[float, int] | None:
    s = summaries(runs.runs)
    if len(s) < 2 or any(x <= 0 for x in s):
        return None
    return stats.variance([math.log(x) for x in s])


def priors(cases: Iterable[Mapping[str, MetricRuns]]) -> dict[str, stats.Prior]:
    """Per metric, the prior on between-run log variance fitted across cases."""
    found: dict[str, list[tuple[float, int]]] = {}
    for metrics in cases:
        for name, runs in metrics.items():
            v = _log_variance(runs)
            if v is not None:
                found.setdefault(name, []).append(v)
    out = {}
    for name, vs in found.items():
        prior = stats.fit_prior([v for v, _ in vs], [d for _, d in vs])
        if prior is not None:
            out[name] = prior
    return out


def paired_priors(
    cases: Iterable[tuple[Mapping[str, MetricRuns], Mapping[str, MetricRuns]]],
) -> dict[str, stats.Prior]:
    """Per metric, the prior on the variance of paired log ratios, across cases."""
    found: dict[str, list[tuple[float, int]]] = {}
    for reference, candidate in cases:
        for name, runs in candidate.items():
            if name not in reference:
                continue
            v = stats.variance(log_ratios(reference[name].runs, runs.runs))
            if v is not None:
                found.setdefault(name, []).append(v)
    out = {}
    for name, vs in found.items():
        prior = stats.fit_prior([v for v, _ in vs], [d for _, d in vs])
        if prior is not None:
            out[name] = prior
    return out


def judge_case(
    case: CaseResult,
    reference: Mapping[str, MetricRuns] | None,
    policy: GatePolicy,
    priors: Mapping[str, stats.Prior] | None = None,
    paired: bool = False,
) -> CaseResult:
    """The case's metrics against the reference's runs (a baseline case, or the A/B
    reference side when ``paired``); None: no reference, every metric is new."""
    if case.error is not None:
        return replace(case, verdict=Verdict.ERROR, comparisons=())
    specs = {name: spec_for(name, m) for name, m in case.metrics.items()}
    families = {
        s.family
        for name, s in specs.items()
        if s.judged and s.kind is Kind.TIMED and reference is not None and name in reference
    }
    alpha = policy.test_alpha(len(families))
    comparisons: list[Comparison] = []
    for name in sorted(case.metrics):
        cur, m = case.metrics[name], specs[name]
        if reference is None or name not in reference:
            comparisons.append(
                Comparison(
                    name,
                    cur.unit,
                    cur.direction,
                    Verdict.NEW,
                    math.nan,
                    cur.median,
                    math.nan,
                    None,
                    None,
                    None,
                    policy.tolerance(m),
                    0,
                    len(cur.runs),
                    note="no reference",
                )
            )
            continue
        comparisons.append(
            compare(
                m,
                reference[name].runs,
                cur.runs,
                policy.tolerance(m),
                alpha,
                policy.power,
                (priors or {}).get(name),
                paired,
            )
        )
    return case.with_comparisons(tuple(comparisons))


def compare_runs(
    current: RunResults,
    baseline: RunResults | None,
    policy: GatePolicy,
    baseline_path: str | None = None,
) -> RunResults:
    """Judge every case of ``current`` against ``baseline`` (the CLI's compare);
    baseline cases it lacks are ``missing``."""
    base_cases = baseline.cases if baseline else {}
    fitted = priors(c.metrics for c in base_cases.values())
    policy = replace(policy, cases=len(current.cases))
    cases = {
        cid: judge_case(c, base_cases[cid].metrics if cid in base_cases else None, policy, fitted)
        for cid, c in current.cases.items()
    }
    return replace(
        current,
        cases=cases,
        missing=tuple(sorted(set(base_cases) - set(current.cases))),
        baseline_path=baseline_path,
        mode="baseline",
        gate=policy.to_dict(),
        baseline_environment=dict(baseline.environment) if baseline else None,
    )


def failure_message(case: CaseResult, policy: GatePolicy) -> str:
    bad = [c for c in case.comparisons if policy.fails(c.verdict)]
    head = f"{case.case_id}: {len(bad)} metric(s) {case.verdict.value} against its reference"
    return "\n".join([head] + ["  " + c.line() for c in bad])


def rejudge_ab(
    run: RunResults, policy: GatePolicy, order: Sequence[str] | None = None
) -> RunResults:
    """An A/B run's cases and suite judged again from its recorded pairs. ``order``: the
    order the cases ran in, case by case; each is then judged, as it was live, with the
    prior of the cases measured up to it (else with the prior of all)."""
    policy = replace(policy, cases=len(run.cases), paired=True)
    ids = [cid for cid in order or () if cid in run.cases] or list(run.cases)
    ids += [cid for cid in run.cases if cid not in ids]
    sides = [(run.cases[cid].reference, run.cases[cid].metrics) for cid in ids]
    fitted = None if order else paired_priors(sides)
    cases = {
        cid: judge_case(
            run.cases[cid],
            run.cases[cid].reference,
            policy,
            paired_priors(sides[: i + 1]) if fitted is None else fitted,
            paired=True,
        )
        for i, cid in enumerate(ids)
    }
    return replace(run, cases=cases, suite=suite_effects(cases, policy), gate=policy.to_dict())


# A/B: the metrics also judged across the whole suite (one of each family that matters).
SUITE_METRICS = ("output_tok_s", "ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50")


def suite_effects(cases: Mapping[str, CaseResult], policy: GatePolicy) -> tuple[Comparison, ...]:
    """A/B: each suite metric's change across the cases, a trimmed-mean test (Yuen's) on
    the cases' mean pair log ratios. An upgrade that costs every case 8 % is plain across 20
    cases long before any one case's few pairs show it; pairing cancels the machine's drift,
    so in an A/A job the cases' effects scatter independently around zero, and trimming
    keeps a case whose pair a slow phase hit from hiding the rest."""
    alpha = (policy.alpha - policy.case_alpha) / len(SUITE_METRICS)
    out = []
    for name in SUITE_METRICS:
        spec = lookup(name)
        effects = []
        for c in cases.values():
            if c.error is None and c.reference and name in c.reference and name in c.metrics:
                d = log_ratios(c.reference[name].runs, c.metrics[name].runs)
                if d:
                    effects.append(sum(d) / len(d))
        if spec is None or len(effects) < 3:
            continue
        comp = compare(
            spec,
            [[1.0]] * len(effects),
            [[math.exp(e)] for e in effects],
            policy.tolerance(spec),
            alpha,
            policy.power,
            paired=True,
            robust=True,
        )
        out.append(replace(comp, reference=math.nan, current=math.nan, note="across cases"))
    return tuple(out)


def suite_line(c: Comparison) -> str:
    """One readable line for a suite effect (its n counts cases, not runs)."""
    return (
        f"{c.metric} across {c.n_current} cases: {c.change:+.1%}{c.evidence()}; "
        f"tolerance {c.tolerance:.0%}, detectable "
        + (f"{c.detectable:.0%}" if c.detectable is not None and c.detectable <= 1 else "-")
    )
