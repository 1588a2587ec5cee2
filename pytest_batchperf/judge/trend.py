"""A baseline's history read as a series of jobs: where its level changed, which jobs were
wild, where it drifts; and the window of jobs the gate judges against.

Each case's job means (log, one per job) of the metrics judged across the suite split into
the offset every case of a job shares (read in every suite metric) and the case's own
remainder (read in the first: every series read is one more chance of a false cut):

- **wild jobs**: a job more than ``WILD_Z`` robust standard deviations from the median of
  its five nearest (a host that thrashed) is left out, so that one bad job neither widens
  the interval nor moves the mean;
- **change points** (PELT on the l2 cost, from ruptures, penalised in units of the series'
  own noise): a job that passed with a speed-up, or a regression too small to fail alone,
  moves the level, and the jobs before it are another runner's past, not noise;
- **drift**: the last jobs leaning one way, each step inside the noise, the sum beyond the
  tolerance (asv#934); reported, never failed.

The noise scale of a series comes from its first differences (median absolute deviation),
which a change of level moves by one difference only."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from .catalog import Direction, MetricSpec, lookup
from .results import CaseResult, MetricRuns, RunResults

MIN_SEGMENT = 3  # jobs a level must hold before a change point can end it
MIN_CUT = 12  # jobs a history needs before it is cut at a change point
WILD_Z = 5.0  # robust z beyond which a job is left out of the window
# PELT's penalty per change point, in the series' noise variance times log(jobs): rare
# false change points from 20 jobs on (docs/gate.md).
PENALTY = 12.0
WILD_MIN = 10  # jobs a window needs before one of them can be called wild
DRIFT_JOBS = 4  # jobs a drift must span
DRIFT_ALPHA = 0.01  # per run: shared over its cases, metrics and the starts tried


def noise_scale(values: Sequence[float]) -> float:
    """A robust standard deviation of ``values`` around a level that may change: the MAD
    of its first differences over sqrt(2). NaN below three values."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size < 3:
        return math.nan
    d = np.diff(x)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def change_points(values: Sequence[float], scale: float | None = None) -> list[int]:
    """Indices where a new level begins, oldest first (PELT, l2 cost)."""
    import numpy as np

    n = len(values)
    sigma = noise_scale(values) if scale is None else scale
    if n < max(MIN_CUT, 2 * MIN_SEGMENT) or not sigma > 0:
        return []
    import ruptures

    signal = np.asarray(values, dtype=float).reshape(-1, 1)
    # the linear kernel's cost is the l2 cost; KernelCPD runs PELT in C, 100x ruptures.Pelt
    algo = ruptures.KernelCPD(kernel="linear", min_size=MIN_SEGMENT, jump=1).fit(signal)
    ends = algo.predict(pen=PENALTY * sigma**2 * math.log(n))
    return [int(e) for e in ends[:-1]]


def wild(values: Sequence[float], scale: float) -> list[int]:
    """Indices of values more than ``WILD_Z`` robust sds from the median of their five
    nearest (``WILD_MIN`` or more values): a level that changed follows within two jobs,
    one wild job does not. The sd is the larger of ``scale`` and the MAD of those
    distances, since either alone, on ten values, calls a normal one wild several times in
    a hundred."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size < WILD_MIN:
        return []
    local = np.array([np.median(x[max(0, i - 2) : i + 3]) for i in range(x.size)])
    off = np.abs(x - local)
    sd = max(scale, 1.4826 * float(np.median(off)))
    return [int(i) for i in np.flatnonzero(off > WILD_Z * sd)] if sd > 0 else []


@dataclass(frozen=True)
class Drift:
    start: int  # index of the first job that drifted
    total: float  # log change from the level before it to the last job
    p_value: float


def drift(values: Sequence[float], alpha: float = DRIFT_ALPHA) -> Drift | None:
    """The broken line that fits ``values`` best (flat, then a trend from ``start`` on, over
    at least ``DRIFT_JOBS`` jobs) where its slope is significant at ``alpha`` shared over
    the starts tried; None otherwise."""
    import numpy as np
    from scipy.special import stdtr

    y = np.asarray(values, dtype=float)
    n = y.size
    starts = range(1, n - DRIFT_JOBS + 1)
    if n < DRIFT_JOBS + 3:
        return None
    best: Drift | None = None
    for s in starts:
        x = np.maximum(0.0, np.arange(n) - s + 1)
        a = np.column_stack([np.ones(n), x])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        resid = y - a @ coef
        s2 = float(resid @ resid) / (n - 2)
        sxx = float(((x - x.mean()) ** 2).sum())
        if s2 <= 0 or sxx <= 0:
            continue
        t = float(coef[1]) / math.sqrt(s2 / sxx)
        p = float(2 * stdtr(n - 2, -abs(t)))
        if best is None or p < best.p_value:
            best = Drift(s, float(coef[1]) * float(x[-1]), p)
    if best is None or best.p_value * len(starts) >= alpha:
        return None
    return best


@dataclass(frozen=True)
class CaseWindow:
    """The jobs of one case that the gate judges against."""

    kept: tuple[str, ...]
    start: str | None = None  # the job a change point began the window with
    wild: tuple[str, ...] = ()  # jobs inside the window left out


@dataclass(frozen=True)
class Reading:
    """A history as the gate reads it."""

    cases: Mapping[str, CaseWindow]
    change_points: tuple[str, ...] = ()  # jobs where every case's level moved
    wild_jobs: tuple[str, ...] = ()  # jobs wild for every case

    @property
    def cut(self) -> bool:
        return any(w.start or w.wild for w in self.cases.values())


def job_ids(case: CaseResult, count: int) -> tuple[str, ...]:
    """The ids of a case's newest ``count`` jobs; a case without job records (built in
    memory, or a file older than schema 3) counts them back from its newest."""
    if case.jobs:
        return case.jobs[len(case.jobs) - count :] if count <= len(case.jobs) else ()
    return tuple(f"newest-{count - i - 1}" for i in range(count))


def _jobs_runs(case: CaseResult, metric: MetricRuns) -> list[tuple[str, tuple]] | None:
    """(job id, its runs) of ``metric``, oldest first (its jobs are the case's newest);
    None where the jobs don't line up."""
    sizes = metric.jobs or (len(metric.runs),)
    ids = job_ids(case, len(sizes))
    if len(ids) != len(sizes) or sum(sizes) != len(metric.runs):
        return None
    starts = [sum(sizes[:n]) for n in range(len(sizes))]
    return [(j, metric.runs[i : i + k]) for j, i, k in zip(ids, starts, sizes, strict=True)]


def log_mean(values: Sequence[float]) -> float | None:
    """The mean log of ``values``; None unless they are all positive and finite."""
    if not values or not all(v > 0 and math.isfinite(v) for v in values):
        return None
    return sum(math.log(v) for v in values) / len(values)


def job_means(case: CaseResult, metric: MetricRuns) -> dict[str, float]:
    """Job id -> the mean log run summary of ``metric`` in that job, oldest first, for
    positive summaries; empty where the jobs don't line up."""
    found = _jobs_runs(case, metric) or []
    means = {j: log_mean(replace(metric, runs=runs, jobs=()).summaries) for j, runs in found}
    return {j: m for j, m in means.items() if m is not None}


def job_deviations(case: CaseResult, metric: MetricRuns) -> dict[str, float]:
    """``job_means`` less their mean: each job's offset from the case's level."""
    means = job_means(case, metric)
    mid = sum(means.values()) / len(means) if means else 0.0
    return {j: m - mid for j, m in means.items()}


def read(history: RunResults, metrics: Sequence[str]) -> Reading:
    """Change points and wild jobs of ``history`` in ``metrics``: for the offset every case
    of a job shares, then for each case's own remainder in the first metric (every series
    read is one more chance of a false cut); each case's window begins after the last
    change point either shows and leaves out the jobs either finds wild."""
    import numpy as np

    order = [j.id for j in history.jobs] or _unrecorded_order(history)
    where = {j: n for n, j in enumerate(order)}
    cases = list(history.cases)
    start = {c: 0 for c in cases}  # index into order
    dropped: dict[str, set[int]] = {c: set() for c in cases}
    shared_cuts: set[int] = set()
    shared_wild: set[int] = set()
    for name in metrics:
        grid = np.full((len(cases), len(order)), np.nan)
        for r, cid in enumerate(cases):
            case = history.cases[cid]
            if name in case.metrics:
                for job, m in job_means(case, case.metrics[name]).items():
                    if job in where:
                        grid[r, where[job]] = m
        rows = ~np.all(np.isnan(grid), axis=1)
        if rows.sum() == 0:
            continue
        centred = grid - np.nanmedian(grid, axis=1, keepdims=True)
        cols = ~np.all(np.isnan(centred[rows]), axis=0)
        shared = np.full(len(order), np.nan)
        shared[cols] = np.nanmean(centred[rows][:, cols], axis=0)
        # the shared series, on the jobs every case could see
        idx = np.flatnonzero(cols)
        cuts, odd = _read_series(shared[idx].tolist())
        shared_cuts |= {int(idx[c]) for c in cuts}
        shared_wild |= {int(idx[w]) for w in odd}
        for r, cid in enumerate(cases if name == metrics[0] else ()):
            own = centred[r] - np.where(np.isnan(shared), 0.0, shared)
            present = np.flatnonzero(~np.isnan(own))
            if present.size == 0:
                continue
            cuts, odd = _read_series(own[present].tolist()) if rows.sum() > 1 else ([], [])
            if cuts:
                start[cid] = max(start[cid], int(present[cuts[-1]]))
            dropped[cid] |= {int(present[w]) for w in odd}
    last_cut = max(shared_cuts, default=0)
    windows = {}
    for cid in cases:
        first = max(start[cid], last_cut)
        case = history.cases[cid]
        ids = [j for j in (case.jobs or order) if where.get(j, -1) >= first]
        out = {order[i] for i in dropped[cid] | shared_wild if i >= first}
        kept = tuple(j for j in ids if j not in out)
        windows[cid] = CaseWindow(
            kept=kept,
            start=order[first] if first > 0 and first < len(order) else None,
            wild=tuple(j for j in ids if j in out),
        )
    return Reading(
        windows,
        tuple(order[i] for i in sorted(shared_cuts)),
        tuple(order[i] for i in sorted(shared_wild)),
    )


def _unrecorded_order(history: RunResults) -> list[str]:
    """Job ids oldest first where the file keeps no job records (``job_ids``)."""
    most = max(
        (max(len(m.jobs), 1) for c in history.cases.values() for m in c.metrics.values()), default=0
    )
    return [f"newest-{n}" for n in range(most - 1, -1, -1)]


def _read_series(values: Sequence[float]) -> tuple[list[int], list[int]]:
    """(change points, wild points after the last one) of one series: wild points first,
    so that PELT does not fence one off as a level of its own."""
    scale = noise_scale(values)
    odd = wild(values, scale)
    rest = [i for i in range(len(values)) if i not in odd]
    cuts = [rest[c] for c in change_points([values[i] for i in rest], scale)]
    first = cuts[-1] if cuts else 0
    return cuts, [i for i in odd if i >= first]


def judged(history: RunResults, reading: Reading) -> RunResults:
    """``history`` with each case's runs cut to its window: what the gate judges against."""
    if not reading.cut:
        return history
    cases = {}
    for cid, case in history.cases.items():
        window = reading.cases.get(cid)
        if window is None or (window.start is None and not window.wild):
            cases[cid] = case
            continue
        keep = set(window.kept)
        metrics = {n: kept for n, m in case.metrics.items() if (kept := _kept_runs(case, m, keep))}
        cases[cid] = replace(case, metrics=metrics, jobs=window.kept)
    return replace(history, cases=cases)


def _kept_runs(case: CaseResult, metric: MetricRuns, keep: set[str]) -> MetricRuns | None:
    """``metric`` with the runs of the jobs in ``keep``; None where none is."""
    found = _jobs_runs(case, metric)
    if found is None:
        return metric
    kept = [runs for j, runs in found if j in keep]
    if not kept:
        return None
    jobs = tuple(len(r) for r in kept) if len(kept) > 1 else ()
    return replace(metric, runs=tuple(r for runs in kept for r in runs), jobs=jobs)


@dataclass(frozen=True)
class CaseDrift:
    case_id: str
    metric: str
    since: str  # the job the drift began with
    change: float  # relative, from the level before it to the last job


def drifting(
    window: RunResults,
    current: Mapping[str, CaseResult],
    metrics: Sequence[str],
    tolerance: Callable[[MetricSpec], float],
) -> list[CaseDrift]:
    """Cases whose window's jobs, this job (``current``) last, drift the worse way by more
    than the metric's ``tolerance``, each step inside the noise (``drift``)."""
    out = []
    alpha = DRIFT_ALPHA / max(1, len(window.cases) * len(metrics))
    for cid, case in window.cases.items():
        for name in metrics:
            spec = lookup(name)
            if spec is None or name not in case.metrics:
                continue
            means = job_means(case, case.metrics[name])
            ids, series = list(means), list(means.values())
            now = current.get(cid)
            level = log_mean(now.metrics[name].summaries) if now and name in now.metrics else None
            if level is not None:
                series.append(level)
                ids.append("this job")
            found = drift(series, alpha)
            if found is None:
                continue
            change = math.expm1(found.total)
            worse = -change if spec.direction is Direction.UP else change
            if worse > tolerance(spec):
                out.append(CaseDrift(cid, name, ids[found.start], change))
    return out


def summary(
    history: RunResults,
    reading: Reading,
    metric: str,
    current: Mapping[str, CaseResult] | None = None,
    drifts: Sequence[CaseDrift] = (),
) -> dict[str, Any]:
    """The history as results.json and the reports keep it: its jobs, change points and
    wild jobs, each case's window, its trend in ``metric`` (one mean per job) and this
    job's value (``current``), and the cases that drift."""
    trends, now = {}, {}
    for cid, case in history.cases.items():
        if metric in case.metrics:
            means = job_means(case, case.metrics[metric])
            trends[cid] = [[j, round(math.exp(m), 6)] for j, m in means.items()]
        this = (current or {}).get(cid)
        level = (
            log_mean(this.metrics[metric].summaries) if this and metric in this.metrics else None
        )
        if level is not None:
            now[cid] = round(math.exp(level), 6)
    return {
        "jobs": len(history.jobs),
        "metric": metric,
        "change_points": list(reading.change_points),
        "wild_jobs": list(reading.wild_jobs),
        "windows": {
            cid: {"jobs": len(w.kept), "start": w.start, "wild": list(w.wild)}
            for cid, w in reading.cases.items()
            if w.start or w.wild
        },
        "trends": trends,
        "current": now,
        "drift": [asdict(d) for d in drifts],
    }
