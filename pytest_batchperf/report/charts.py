"""Charts of a run against batch size, drawn with matplotlib as inline SVG.

Figures are built with ``matplotlib.figure.Figure`` and never through pyplot, so no
GUI backend is ever selected and the user's pyplot state is untouched (the SVG
canvas renders headless, like Agg). Text stays text in the SVG (``svg.fonttype:
none``): it keeps each chart small and lets the browser's find-in-page see labels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from ..judge.catalog import lookup
from ..judge.results import CaseResult, RunResults
from .sweeps import Sweep, sweeps

# One colour per strategy across every chart, so a reader learns it once.
COLORS = {
    "sequential": "#7f7f7f",
    "static": "#1f77b4",
    "bucketed": "#2ca02c",
    "dynamic": "#9467bd",
    "continuous": "#d62728",
}
_FALLBACK = ("#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")
PERCENTILE_STYLES = {"p50": "-", "p95": "--", "p99": ":"}
LATENCY_PANELS = (
    ("ttft_ms", "time to first token"),
    ("tpot_ms", "time per output token"),
    ("e2e_ms", "end-to-end latency"),
)
KINDS = ("throughput", "latency", "memory", "strategies", "roofline")

_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,  # case names may contain '$'; never read them as TeX
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


@dataclass(frozen=True)
class Chart:
    id: str  # unique in the page; also salts the SVG's internal ids
    kind: str  # one of KINDS
    title: str
    svg: str


@dataclass(frozen=True)
class Family:
    """The sweeps of one workload in one test file: the strategies compared on it."""

    title: str
    sweeps: tuple[Sweep, ...]

    @property
    def strategies(self) -> list[str]:
        return [s.strategy for s in self.sweeps]


def families(run: RunResults) -> list[Family]:
    groups: dict[tuple[str, str], list[Sweep]] = {}
    for sweep in sweeps(run):
        module = sweep.suite.rsplit("::", 1)[0]  # "<file>::<function>", maybe labelled by merge
        groups.setdefault((module, sweep.workload_key), []).append(sweep)
    out = []
    for (module, _), group in groups.items():
        spec = group[0].points[0].case.spec
        name = spec.workload.name if spec is not None else None
        out.append(Family(f"{module}: workload {name or group[0].workload_key}", tuple(group)))
    return out


def color(strategy: str) -> str:
    if strategy in COLORS:
        return COLORS[strategy]
    return _FALLBACK[sum(map(ord, strategy)) % len(_FALLBACK)]


def _median(case: CaseResult, metric: str) -> float | None:
    m = case.metrics.get(metric)
    if m is None or not math.isfinite(m.median):
        return None
    return m.median


def _spread(case: CaseResult, metric: str) -> tuple[float, float] | None:
    m = case.metrics.get(metric)
    finite = [x for x in m.summaries if math.isfinite(x)] if m else []
    return (min(finite), max(finite)) if finite else None


def _baseline(case: CaseResult, metric: str) -> float | None:
    for c in case.comparisons:
        if c.metric == metric and math.isfinite(c.reference):
            return c.reference
    return None


def _series(sweep: Sweep, metric: str, pick=_median) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for p in sweep.points:
        y = pick(p.case, metric)
        if y is not None:
            xs.append(p.batch_size)
            ys.append(y)
    return xs, ys


def _batch_axis(ax, sizes) -> None:
    sizes = sorted(set(sizes))
    if len(sizes) > 1:
        ax.set_xscale("log", base=2)
        pad = 2**0.35
        ax.set_xlim(sizes[0] / pad, sizes[-1] * pad)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("batch size")


def _label(metric: str) -> str:
    spec = lookup(metric)
    unit = f" ({spec.unit})" if spec and spec.unit not in ("", "count") else ""
    return (spec.label if spec else metric) + unit


def _metric_vs_batch(ax, family: Family, metric: str) -> bool:
    """Median per batch size with the round-to-round range as error bars and the
    baseline's median dashed in the same colour. False when nothing was drawn."""
    drawn, sizes = False, []
    for sweep in family.sweeps:
        pts = [
            (p.batch_size, _median(p.case, metric), _spread(p.case, metric)) for p in sweep.points
        ]
        found = [(x, y, s) for x, y, s in pts if y is not None and s is not None]
        if not found:
            continue
        xs, ys = [x for x, _, _ in found], [y for _, y, _ in found]
        err = [[y - lo for _, y, (lo, _) in found], [hi - y for _, y, (_, hi) in found]]
        c = color(sweep.strategy)
        ax.errorbar(
            xs, ys, yerr=err, color=c, marker="o", ms=4, capsize=3, lw=1.5, label=sweep.strategy
        )
        bx, by = _series(sweep, metric, _baseline)
        if bx:
            ax.plot(
                bx,
                by,
                color=c,
                ls="--",
                marker="o",
                mfc="white",
                ms=4,
                lw=1,
                alpha=0.8,
                label=f"{sweep.strategy} (baseline)",
            )
        sizes += xs + bx
        drawn = True
    if drawn:
        _batch_axis(ax, sizes)
        ax.set_ylabel(_label(metric))
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
    return drawn


def _throughput(fig: Figure, family: Family) -> None:
    ax = fig.subplots()
    if _metric_vs_batch(ax, family, "output_tok_s"):
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.subplots_adjust(left=0.09, right=0.76, bottom=0.14, top=0.9)
    ax.set_title("output tokens/s vs batch size (bars: range of runs; dashed: reference)")


def _memory(fig: Figure, family: Family) -> None:
    ax = fig.subplots()
    gpu = any("peak_gpu_mem_mib" in p.case.metrics for s in family.sweeps for p in s.points)
    metric = "peak_gpu_mem_mib" if gpu else "peak_rss_mib"
    if _metric_vs_batch(ax, family, metric):
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.subplots_adjust(left=0.09, right=0.76, bottom=0.15, top=0.9)
    ax.set_title(f"{'GPU memory' if gpu else 'host memory (RSS)'} vs batch size")


def _latency(fig: Figure, family: Family) -> None:
    axes = fig.subplots(1, len(LATENCY_PANELS))
    for ax, (prefix, title) in zip(axes, LATENCY_PANELS, strict=True):
        sizes = []
        for sweep in family.sweeps:
            for pct, style in PERCENTILE_STYLES.items():
                xs, ys = _series(sweep, f"{prefix}_{pct}")
                if xs:
                    ax.plot(xs, ys, color=color(sweep.strategy), ls=style, marker="o", ms=3, lw=1.3)
                    sizes += xs
        if sizes:
            _batch_axis(ax, sizes)
            ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_ylabel("ms")
    handles = [Line2D([], [], color=color(s), lw=2, label=s) for s in family.strategies]
    handles += [
        Line2D([], [], color="black", ls=style, label=pct)
        for pct, style in PERCENTILE_STYLES.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.27, top=0.9, wspace=0.28)


def _roofline(fig: Figure, family: Family) -> None:
    ax = fig.subplots()
    if _metric_vs_batch(ax, family, "roofline_pct"):
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
        ax.axhline(100, color="black", lw=0.8, ls=":")
    fig.subplots_adjust(left=0.09, right=0.76, bottom=0.15, top=0.9)
    ax.set_title("fraction of the memory-bandwidth roofline of a decode step (100 % = the limit)")


def _strategies(fig: Figure, family: Family) -> None:
    """Each strategy at each batch size, side by side, on the metrics that tell them apart."""
    metrics = ["output_tok_s", "e2e_ms_p95"]
    if any(
        (_median(p.case, "padding_waste_pct") or 0) > 0 for s in family.sweeps for p in s.points
    ):
        metrics.append("padding_waste_pct")  # fixed lengths pad nothing: no panel of zeros
    sizes = sorted({p.batch_size for s in family.sweeps for p in s.points})
    axes = fig.subplots(1, len(metrics))
    width = 0.8 / max(1, len(family.sweeps))
    for ax, metric in zip(axes, metrics, strict=True):
        for i, sweep in enumerate(family.sweeps):
            values = {p.batch_size: _median(p.case, metric) for p in sweep.points}
            xs = [
                j + (i - (len(family.sweeps) - 1) / 2) * width
                for j, b in enumerate(sizes)
                if values.get(b) is not None
            ]
            ys = [values[b] for b in sizes if values.get(b) is not None]
            ax.bar(xs, ys, width, color=color(sweep.strategy), label=sweep.strategy)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([str(b) for b in sizes])
        ax.set_xlabel("batch size")
        ax.set_title(_label(metric))
        ax.grid(axis="x", visible=False)
    fig.legend(
        handles=[Line2D([], [], color=color(s), lw=6, label=s) for s in family.strategies],
        loc="lower center",
        ncols=len(family.sweeps),
        fontsize=8,
    )
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.27, top=0.9, wspace=0.25)


_DRAW = {
    "throughput": (_throughput, (8, 3.6)),
    "latency": (_latency, (11, 3.6)),
    "memory": (_memory, (8, 3.4)),
    "strategies": (_strategies, (11, 3.4)),
    "roofline": (_roofline, (8, 3.4)),
}
_TITLES = {
    "throughput": "Throughput vs batch size",
    "latency": "Latency percentiles vs batch size",
    "memory": "Memory vs batch size",
    "strategies": "Strategies side by side",
    "roofline": "Roofline fraction vs batch size",
}


def render_svg(draw, size: tuple[float, float], salt: str) -> str:
    """``draw(fig)`` onto a new figure; its SVG as an element to inline in HTML."""
    rc: Any = {**_RC, "svg.hashsalt": salt}
    with matplotlib.rc_context(rc):
        # Fixed margins rather than constrained layout: it measures every text twice
        # and made a report take several seconds per chart.
        fig = Figure(figsize=size)
        draw(fig)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    # Drop the XML prolog and DOCTYPE: inline SVG in HTML starts at the element.
    return text[text.index("<svg") :]


def family_charts(family: Family, index: int) -> list[Chart]:
    out = []
    roofline = any("roofline_pct" in p.case.metrics for s in family.sweeps for p in s.points)
    for kind in KINDS:
        if kind == "strategies" and len(family.sweeps) < 2:
            continue  # one strategy: nothing to put side by side
        if kind == "roofline" and not roofline:
            continue
        draw, size = _DRAW[kind]
        chart_id = f"chart-{index}-{kind}"
        out.append(
            Chart(
                chart_id,
                kind,
                _TITLES[kind],
                render_svg(lambda fig, d=draw: d(fig, family), size, chart_id),
            )
        )
    return out
