"""A baseline's history drawn: each case's trend as a text sparkline (``batchperf history``)
and as a small inline SVG beside its verdict (the HTML report), this job as the last point."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..judge import stats
from ..judge.results import RunResults

_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """``values`` as block characters, lowest to highest."""
    lo, hi = min(values, default=0.0), max(values, default=0.0)
    span = hi - lo or 1.0
    return "".join(_BLOCKS[min(7, int((v - lo) / span * 8))] for v in values)


def svg(values: Sequence[float], current: float | None, start: int = 0) -> str:
    """A 96 x 20 px trend line of ``values`` (one per job, oldest first), then ``current``
    (this job) as a dot; jobs before index ``start`` (an earlier level) greyed."""
    points = [*values, *([current] if current is not None else [])]
    if len(points) < 2:
        return ""
    w, h, pad = 96.0, 20.0, 2.0
    lo, hi = min(points), max(points)
    span = hi - lo or 1.0

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + i * (w - 2 * pad) / (len(points) - 1)
        return round(x, 1), round(h - pad - (v - lo) / span * (h - 2 * pad), 1)

    def line(idx: range, cls: str) -> str:
        pts = " ".join("{},{}".format(*xy(i, points[i])) for i in idx)
        return f'<polyline class="{cls}" points="{pts}"/>' if len(idx) > 1 else ""

    last = len(values) - 1
    parts = [line(range(0, min(start + 1, len(values))), "old"), line(range(start, last + 1), "h")]
    if current is not None:
        x, y = xy(len(points) - 1, current)
        parts.append(line(range(last, last + 2), "now"))
        parts.append(f'<circle class="now" cx="{x}" cy="{y}" r="2"/>')
    label = f"{len(values)} jobs of the history, then this job"
    return (
        f'<svg class="trend" viewBox="0 0 {w:.0f} {h:.0f}" width="{w:.0f}" height="{h:.0f}" '
        f'role="img" aria-label="{label}"><title>{label}</title>{"".join(parts)}</svg>'
    )


def case_trend(history: Mapping[str, Any], case_id: str, current: float | None) -> str:
    """The SVG of one case from a run's ``history`` (``trend.summary``), or ''."""
    found = history.get("trends", {}).get(case_id)
    if not found:
        return ""
    ids = [j for j, _ in found]
    start = (history.get("windows", {}).get(case_id) or {}).get("start")
    return svg([v for _, v in found], current, ids.index(start) if start in ids else 0)


def lines(history: RunResults, summary: Mapping[str, Any]) -> list[str]:
    """``batchperf history``: the file's jobs, its change points and wild jobs, and one line
    per case: its trend, the last job's value, its window and drift."""
    jobs = history.jobs
    span = f"{jobs[0].created or '-'} to {jobs[-1].created or '-'}" if jobs else "-"
    out = [
        f"{len(jobs)} job(s) of profile {history.profile} on {history.hardware_class}, {span}",
        f"change points (every case): {', '.join(summary['change_points']) or 'none'}",
        f"wild jobs (every case): {', '.join(summary['wild_jobs']) or 'none'}",
        f"{summary['metric']} per job, oldest first (each case from its lowest to its highest):",
    ]
    drift = {(d["case_id"]): d for d in summary.get("drift", ())}
    for cid, found in sorted(summary["trends"].items()):
        values = [v for _, v in found]
        window = summary["windows"].get(cid, {})
        notes = []
        if window.get("start"):
            notes.append(f"window since {window['start']} ({window['jobs']} jobs)")
        if window.get("wild"):
            notes.append(f"wild: {', '.join(window['wild'])}")
        if cid in drift:
            d = drift[cid]
            notes.append(f"drift {d['metric']} {d['change']:+.1%} since {d['since']}")
        spread = _spread(values)
        out.append(
            f"  {cid.split('::')[-1]:<34} {sparkline(values)}  last {values[-1]:,.4g}, "
            f"job sd {spread}" + (f"; {'; '.join(notes)}" if notes else "")
        )
    return out


def _spread(values: Sequence[float]) -> str:
    found = stats.variance([math.log(v) for v in values if v > 0])
    return f"{math.sqrt(found[0]):.1%}" if found else "-"
