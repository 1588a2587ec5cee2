"""How much a case's runs differ on this runner, and whether they fall into two groups.

A run is a fresh engine process, so the spread of a case's run summaries is the noise the
gate must see through. Spreads are standard deviations of the log (a 3 % spread is 3 % at
any speed): between the processes of one job (pooled over jobs), and between the means of
whole save jobs where the file holds several.

A *bimodal* case has runs that sit in two groups (one fast, one slow): a process either gets
a good placement of its threads or a bad one. No variance describes that, so it is named
apart. The test: the best split of the runs into two groups leaves less spread within them
than 99 % of normal samples of the same size would, and the groups' medians differ by at
least ``MIN_SEPARATION``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from .results import MetricRuns, RunResults

# Two groups closer than this do not change a verdict: not worth a flag.
MIN_SEPARATION = 0.05
# The share of normal samples whose best split the test may call bimodal.
FALSE_FLAG = 0.01
MIN_RUNS = 4


@dataclass(frozen=True)
class Spread:
    case_id: str
    metric: str
    runs: tuple[float, ...]  # one summary per run (its rounds' median)
    jobs: tuple[int, ...]  # runs per save job
    process_sd: float | None  # sd of log run summaries within a job, pooled over jobs
    job_sd: float | None  # sd of log job means (two jobs or more)
    modes: tuple[tuple[float, ...], tuple[float, ...]] | None  # slow group, fast group

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def _ss(x: Sequence[float]) -> float:
    mean = sum(x) / len(x)
    return sum((v - mean) ** 2 for v in x)


def _best_split(x: Sequence[float]) -> tuple[float, int]:
    """(total over within sum of squares, split index) of sorted ``x``'s best split into
    two groups of at least two."""
    total = _ss(x)
    best, where = 1.0, 0
    for k in range(2, len(x) - 1):
        within = _ss(x[:k]) + _ss(x[k:])
        ratio = math.inf if within <= 0 else total / within
        if ratio > best:
            best, where = ratio, k
    return best, where


@cache
def _critical(n: int) -> float:
    """The (1 - FALSE_FLAG) quantile of the best-split ratio of ``n`` normal values."""
    import numpy as np

    rng = np.random.default_rng(20261207)
    x = np.sort(rng.standard_normal((20000, n)), axis=1)
    total = ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    best = np.ones(len(x))
    for k in range(2, n - 1):
        a, b = x[:, :k], x[:, k:]
        within = ((a - a.mean(1, keepdims=True)) ** 2).sum(1) + (
            (b - b.mean(1, keepdims=True)) ** 2
        ).sum(1)
        best = np.maximum(best, total / within)
    return float(np.quantile(best, 1 - FALSE_FLAG))


def modes(
    values: Sequence[float], centres: Sequence[float] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The slow and the fast group of ``values`` (positive, one per run) if they are
    bimodal, else None. ``centres``: each value's job mean (log), taken out first so that a
    job's offset is not read as a mode."""
    if len(values) < MIN_RUNS or min(values) <= 0:
        return None
    shift = centres or [0.0] * len(values)
    logs = [math.log(v) - c for v, c in zip(values, shift, strict=True)]
    order = sorted(range(len(values)), key=lambda i: logs[i])
    ratio, k = _best_split([logs[i] for i in order])
    if k == 0 or ratio <= _critical(len(values)):
        return None
    low = tuple(values[i] for i in order[:k])
    high = tuple(values[i] for i in order[k:])
    if math.log(statistics.median(high) / statistics.median(low)) < MIN_SEPARATION:
        return None
    return low, high


def spread(case_id: str, m: MetricRuns) -> Spread:
    """``m``'s runs as a spread between processes and jobs, with its modes if bimodal."""
    runs = tuple(x for x in m.summaries if x > 0 and math.isfinite(x))
    jobs = m.jobs if m.jobs and sum(m.jobs) == len(runs) else (len(runs),)
    logs = [math.log(x) for x in runs]
    groups, at = [], 0
    for size in jobs:
        groups.append(logs[at : at + size])
        at += size
    within = [_ss(g) for g in groups if len(g) > 1]
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    process_sd = math.sqrt(sum(within) / df) if df else None
    means = [sum(g) / len(g) for g in groups if g]
    job_sd = statistics.stdev(means) if len(means) > 1 else None
    centres = [sum(g) / len(g) for g in groups for _ in g] if len(groups) > 1 else None
    return Spread(case_id, m.name, runs, jobs, process_sd, job_sd, modes(runs, centres))


def audit(run: RunResults, metrics: Sequence[str] = ("output_tok_s",)) -> list[Spread]:
    """Every case's spread of each of ``metrics`` it has, in case order."""
    return [
        spread(case_id, case.metrics[name])
        for case_id, case in sorted(run.cases.items())
        for name in metrics
        if name in case.metrics and case.metrics[name].runs
    ]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def table(spreads: Sequence[Spread]) -> list[str]:
    """A markdown table: one row per case and metric."""
    out = [
        "| case | metric | runs | jobs | median | between processes | between jobs | range | |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in spreads:
        flag = ""
        if s.modes:
            low, high = s.modes
            flag = (
                f"**bimodal**: {len(low)} runs at {min(low):,.4g}-{max(low):,.4g}, "
                f"{len(high)} at {min(high):,.4g}-{max(high):,.4g}"
            )
        name = s.case_id.rsplit("::", 1)[-1]
        out.append(
            f"| {name} | {s.metric} | {len(s.runs)} | {len(s.jobs)} | {s.median:,.4g} | "
            f"{_pct(s.process_sd)} | {_pct(s.job_sd)} | {min(s.runs):,.4g}-{max(s.runs):,.4g} "
            f"| {flag} |"
        )
    return out
