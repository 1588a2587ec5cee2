"""The decision rule for one metric of one case: is its change real, and big enough to matter?

A metric **regresses** when its change moved the wrong way by more than its tolerance AND
the change is beyond the noise: a one-sided test on the log run summaries (``judge.stats``)
at the test's share ``alpha`` of the run's false-alarm budget. Beyond tolerance without
that evidence it is **inconclusive**; real but within tolerance it passes. Every judged
metric also reports the smallest change this runner can detect (``detectable``) at that
alpha and the policy's power: a tolerance below it cannot be enforced here.

Where no between-run noise is known at all (a 1-run baseline), the rule is conservative:
Welch's t on the baseline run's rounds against every candidate run's, and twice the
tolerance. Without any test (one round a side) nothing regresses: the change is
inconclusive, since a verdict outside the alpha budget would break the run's promise.
Counts compare exactly. An inconclusive change worse than ``SUSPECT_FACTOR`` times its
tolerance is a suspected regression, shown first with the runs it would need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from . import DEFAULT_ALPHA, DEFAULT_POWER, stats
from .catalog import Direction, Kind, MetricSpec


class Verdict(StrEnum):
    PASS = "pass"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"
    MISSING = "missing"
    ERROR = "error"


# Severity order: a case's verdict is its worst metric's.
SEVERITY = [
    Verdict.ERROR,
    Verdict.REGRESSED,
    Verdict.INCONCLUSIVE,
    Verdict.MISSING,
    Verdict.NEW,
    Verdict.IMPROVED,
    Verdict.PASS,
]

ONE_RUN_FACTOR = 2.0  # the tolerance multiple a 1-run comparison needs
SUSPECT_FACTOR = 2.0  # an inconclusive change this many tolerances off is suspected


@dataclass(frozen=True)
class Comparison:
    metric: str
    unit: str
    direction: Direction
    verdict: Verdict
    reference: float  # geometric mean of the reference's run summaries
    current: float  # geometric mean of the candidate's run summaries
    change: float  # current / reference - 1
    ci_low: float | None  # the gate's interval of the change (its one-sided alpha each side)
    ci_high: float | None
    p_value: float | None  # one-sided, in the adverse direction
    tolerance: float
    n_reference: int  # runs (or pairs)
    n_current: int
    detectable: float | None = None  # smallest adverse change detectable (fraction)
    alpha: float | None = None  # this test's share of the run's false-alarm budget
    note: str = ""
    gated: bool = True  # False: shown with its change, never fails (not a headline metric)
    runs_needed: int | None = None  # inconclusive: candidate runs that would decide it

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", Direction(self.direction))  # from JSON: a string

    @classmethod
    def untested(
        cls,
        metric: str,
        unit: str,
        direction: Direction,
        verdict: Verdict,
        *,
        reference: float = math.nan,
        current: float = math.nan,
        tolerance: float = 0.0,
        n_reference: int = 0,
        n_current: int = 0,
        note: str = "",
    ) -> Comparison:
        """A verdict without a statistical test: no reference, or a batch that no longer fits."""
        return cls(
            metric=metric,
            unit=unit,
            direction=direction,
            verdict=verdict,
            reference=reference,
            current=current,
            change=math.nan,
            ci_low=None,
            ci_high=None,
            p_value=None,
            tolerance=tolerance,
            n_reference=n_reference,
            n_current=n_current,
            note=note,
        )

    @property
    def suspected(self) -> bool:
        """Inconclusive, but its estimate is worse than ``SUSPECT_FACTOR`` tolerances."""
        if self.verdict is not Verdict.INCONCLUSIVE or not math.isfinite(self.change):
            return False
        limit = SUSPECT_FACTOR * self.tolerance
        return self.change < -limit if self.direction is Direction.UP else self.change > limit

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["verdict"] = self.verdict.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        """From results.json; schema 1 named the reference side "baseline"."""
        d = {"reference": d.get("baseline", math.nan), "n_reference": d.get("n_baseline", 0), **d}
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: v for k, v in d.items() if k in known and k != "verdict"},
            verdict=Verdict(d["verdict"]),
        )

    @property
    def below_noise(self) -> bool:
        """The tolerance is tighter than the smallest change this runner can detect."""
        return self.detectable is not None and self.tolerance < self.detectable

    def evidence(self) -> str:
        """ ", interval [lo, hi], p=..." as far as the test gave them."""
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            ci = f", interval [{self.ci_low:+.1%}, {self.ci_high:+.1%}]"
        return ci + (f", p={self.p_value:.2g}" if self.p_value is not None else "")

    def line(self) -> str:
        """One readable line: reference -> now, change, interval, runs, tolerance."""
        runs = f", {self.n_reference} vs {self.n_current} runs" if self.n_current else ""
        mdc = (
            ""
            if self.detectable is None
            else (
                f", detectable {self.detectable:.0%}"
                if self.detectable <= 1
                else ", detectable >100% (too few runs to know the noise)"
            )
        )
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.metric}: {_fmt(self.reference)} -> {_fmt(self.current)} {self.unit} "
            f"({self.change:+.1%}{self.evidence()}{runs}; tolerance {self.tolerance:.0%}{mdc}, "
            f"{'higher' if self.direction is Direction.UP else 'lower'} is better){note}"
        )


def _fmt(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "nan"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4g}"


def run_summaries(runs: Sequence[Sequence[float]]) -> list[float]:
    """Each run's median of its finite rounds (nan for a run with none), in run order."""
    out = []
    for r in runs:
        finite = sorted(x for x in r if math.isfinite(x))
        mid = len(finite) // 2
        out.append(
            math.nan
            if not finite
            else finite[mid]
            if len(finite) % 2
            else (finite[mid - 1] + finite[mid]) / 2
        )
    return out


def summaries(runs: Sequence[Sequence[float]]) -> list[float]:
    """The summaries of the runs that have one."""
    return [x for x in run_summaries(runs) if math.isfinite(x)]


def log_ratios(
    reference: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]]
) -> list[float]:
    """Per pair (run i of each side), log(candidate / reference); incomplete pairs left out."""
    return [
        math.log(b / a)
        for a, b in zip(run_summaries(reference), run_summaries(candidate), strict=False)
        if math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0
    ]


def _worse(direction: Direction, ratio: float, tol: float) -> bool:
    return ratio < 1 - tol if direction is Direction.UP else ratio > 1 + tol


def _better(direction: Direction, ratio: float, tol: float) -> bool:
    return ratio > 1 + tol if direction is Direction.UP else ratio < 1 - tol


def _expm1(x: float) -> float:
    """exp(x) - 1 of a log bound; a bound too wide for a float is unbounded."""
    return math.expm1(x) if x < 700 else math.inf


def _gmean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _logs(runs: Sequence[Sequence[float]]) -> list[float] | None:
    s = summaries(runs)
    return [math.log(x) for x in s] if s and all(x > 0 for x in s) else None


def compare(
    spec: MetricSpec,
    reference: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    tolerance: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    prior: stats.Prior | None = None,
    paired: bool = False,
    robust: bool = False,
    jobs: Sequence[int] = (),
    job_prior: stats.Prior | None = None,
    job_parts: tuple[stats.Prior, stats.Prior] | None = None,
) -> Comparison:
    """Judge the candidate's runs against the reference's (each run: its rounds, or its
    summary alone). ``paired``: run i of each side was measured as a pair (A/B);
    ``robust``: with a 20 % trimmed mean of the pairs' log ratios (``stats.trimmed``);
    ``jobs`` and ``job_prior``: the reference's save jobs and the between-job default."""
    tol = spec.tolerance if tolerance is None else tolerance
    ref, cur = summaries(reference), summaries(candidate)
    base: dict[str, Any] = dict(
        metric=spec.name,
        unit=spec.unit,
        direction=spec.direction,
        tolerance=tol,
        n_reference=len(ref),
        n_current=len(cur),
    )
    if not ref or not cur:
        return Comparison(
            verdict=Verdict.INCONCLUSIVE,
            reference=math.nan,
            current=math.nan,
            change=math.nan,
            ci_low=None,
            ci_high=None,
            p_value=None,
            note="no finite samples",
            **base,
        )
    positive = all(x > 0 for x in ref + cur)
    mb = _gmean(ref) if positive else sum(ref) / len(ref)
    mc = _gmean(cur) if positive else sum(cur) / len(cur)
    ratio = (1.0 if mc == 0 else math.inf) if mb == 0 else mc / mb
    change = ratio - 1 if math.isfinite(ratio) else math.inf
    untested: dict[str, Any] = dict(
        reference=mb, current=mc, change=change, ci_low=None, ci_high=None, p_value=None
    )
    if spec.direction is Direction.INFO:
        return Comparison(verdict=Verdict.PASS, note="informational", **untested, **base)
    if spec.kind is Kind.EXACT:
        verdict = Verdict.PASS
        # Stored values keep 6 significant digits: equal counts read back from a baseline
        # differ from fresh ones by up to 5e-6, relatively.
        if not math.isclose(mb, mc, rel_tol=1e-5, abs_tol=1e-9):
            if _worse(spec.direction, ratio, tol) or (mb == 0 and spec.direction is Direction.DOWN):
                verdict = Verdict.REGRESSED
            elif _better(spec.direction, ratio, tol):
                verdict = Verdict.IMPROVED
        return Comparison(verdict=verdict, note="exact", **untested, **base)

    if positive:
        est, note, factor = _estimate(
            reference, candidate, prior, paired, robust, (jobs, job_prior, job_parts)
        )
        to_change: Callable[[float], float] = _expm1  # a log ratio to a relative change
        if robust and est is not None:  # the trimmed estimate, not the plain mean's
            ratio = math.exp(est.delta)
            change = ratio - 1
    else:
        est, note, factor = _linear_estimate(reference, candidate, mb, paired), "", 1.0
        to_change = float  # already relative to the reference's mean
        if est is None:
            note = "zero values and too few runs to know the noise: the tolerance decides"
    return decide(
        spec, est, base, (mb, mc, ratio, change), tol, alpha, power, note, factor, to_change, paired
    )


def decide(
    spec: MetricSpec,
    est: stats.Estimate | None,
    base: dict[str, Any],
    values: tuple[float, float, float, float],
    tol: float,
    alpha: float,
    power: float,
    note: str = "",
    factor: float = 1.0,
    to_change: Callable[[float], float] = _expm1,
    paired: bool = False,
) -> Comparison:
    """The verdict on an estimate: beyond tolerance (``factor`` times) with a test at
    ``alpha`` regresses or improves; beyond tolerance without one is inconclusive.
    ``values``: reference and current means, their ratio and change."""
    mb, mc, ratio, change = values
    up = spec.direction is Direction.UP
    p = p_better = lo = hi = mdc = needed = None
    if est is not None:
        alpha /= est.choices
        p, p_better = (
            (stats.p_below(est), stats.p_above(est))
            if up
            else (stats.p_above(est), stats.p_below(est))
        )
        low, high = stats.bounds(est, alpha)
        lo, hi = to_change(low), to_change(high)
        shift = stats.detectable(est, alpha, power) * factor
        mdc = -to_change(-shift) if up else to_change(shift)
    if _worse(spec.direction, ratio, tol * factor) and p is not None and p < alpha:
        verdict = Verdict.REGRESSED
    elif _worse(spec.direction, ratio, tol):
        verdict = Verdict.INCONCLUSIVE
        note = note or "beyond tolerance but within the noise"
        if est is not None and ratio > 0 and math.isfinite(ratio):
            needed = est.runs_for(abs(math.log(ratio)) / factor, alpha)
    elif _better(spec.direction, ratio, tol * factor) and p_better is not None and p_better < alpha:
        verdict = Verdict.IMPROVED
    else:
        verdict = Verdict.PASS
    if paired and est is not None:
        base = {**base, "n_reference": est.n_candidate, "n_current": est.n_candidate}
    return Comparison(
        verdict=verdict,
        reference=mb,
        current=mc,
        change=change,
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        detectable=mdc,
        alpha=alpha,
        note=note,
        runs_needed=needed,
        **base,
    )


def _linear_estimate(
    reference: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    reference_mean: float,
    paired: bool,
) -> stats.Estimate | None:
    """The change relative to the reference's mean, tested on the run summaries themselves:
    for metrics that may be zero (goodput under a tight SLO), where logs do not exist. The
    runs' own variance only (the cross-case prior is one of log variances)."""
    if reference_mean <= 0:
        return None
    try:  # a reference mean near zero makes relative changes overflow: no estimate
        if paired:
            diffs = [
                (b - a) / reference_mean
                for a, b in zip(run_summaries(reference), run_summaries(candidate), strict=False)
                if math.isfinite(a) and math.isfinite(b)
            ]
            return stats.paired(diffs, None)
        scaled = [[x / reference_mean for x in summaries(runs)] for runs in (reference, candidate)]
        return stats.prediction(scaled[0], scaled[1], None)
    except OverflowError:
        return None


def _estimate(
    reference: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    prior: stats.Prior | None,
    paired: bool,
    robust: bool = False,
    between_jobs: tuple[
        Sequence[int], stats.Prior | None, tuple[stats.Prior, stats.Prior] | None
    ] = (
        (),
        None,
        None,
    ),
) -> tuple[stats.Estimate | None, str, float]:
    """(estimate of the log ratio, note, tolerance factor) for a timed metric."""
    if paired and robust:
        est = stats.trimmed(log_ratios(reference, candidate))
    elif paired:
        est = stats.paired(log_ratios(reference, candidate), prior)
    else:
        ref, cur = _logs(reference), _logs(candidate)
        est = stats.prediction(ref or [], cur or [], prior, *between_jobs)
    if est is not None:
        return est, "", 1.0
    # A 1-run reference and no prior: rounds are all the evidence, and they understate the
    # noise between runs, so the tolerance doubles. Every candidate run's rounds count.
    rounds = [
        [math.log(x) for run in runs for x in run if math.isfinite(x) and x > 0]
        for runs in (reference[:1], candidate)
    ]
    note = (
        f"one reference run: judged on rounds at {ONE_RUN_FACTOR:g}x the tolerance; "
        "save the baseline with more runs"
    )
    return stats.welch(rounds[0], rounds[1]), note, ONE_RUN_FACTOR


def worst(verdicts: Any) -> Verdict:
    verdicts = list(verdicts)
    for v in SEVERITY:
        if v in verdicts:
            return v
    return Verdict.PASS
