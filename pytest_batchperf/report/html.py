"""index.html: one self-contained page (inline CSS, JS and SVG; nothing fetched), so it
opens from a CI artifact. Rendered by jinja2 with autoescaping on: case ids, model
names and environment values are data, never markup."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..atomic import write_atomic
from ..judge.decision import SEVERITY, Comparison, _fmt
from ..judge.gate import suite_line
from ..judge.results import CaseResult, Mode, RunResults
from ..measure.environment import diff
from .charts import families, family_charts
from .history import case_trend
from .summary import key_comparison, suspected

_RANK = {v: i for i, v in enumerate(SEVERITY)}

# Rows of the environment diff a driver/engine/model gate is about; shown even when equal.
_HEADLINE = re.compile(
    r"(^|\.)(gpu|gpu_memory_mib|gpus_used|driver|cuda_driver|cuda|python|python_version|cpu|"
    r"cpu_count|usable_cores|device)$|model_hash$|model$|(^|\.)packages\.|^engine\.process\."
    r"|^engine\.(vllm|llama_cpp_python|transformers|torch|server_command|server_version)$"
)


@dataclass(frozen=True)
class Row:
    """One case in the verdict table, with the comparison that decided its verdict."""

    case: CaseResult
    anchor: str
    rank: int
    key: Comparison | None
    trend: Markup  # the case's history, this job last


def _rows(run: RunResults) -> list[Row]:
    cases = sorted(run.cases.values(), key=lambda c: (_RANK[c.verdict], c.case_id))
    return [
        Row(c, f"case-{i}", _RANK[c.verdict], key_comparison(c), _trend(run, c))
        for i, c in enumerate(cases)
    ]


def _trend(run: RunResults, case: CaseResult) -> Markup:
    current = run.history.get("current", {}).get(case.case_id)
    # numbers and fixed class names only: safe to mark up
    return Markup(case_trend(run.history, case.case_id, current))


def _num(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else _fmt(x)


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.1%}"


def _interval(c: Comparison) -> str:
    if c.ci_low is None or c.ci_high is None:
        return "–"
    return f"[{c.ci_low:+.1%}, {c.ci_high:+.1%}]"


def _pct_plain(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.1%}" if x <= 1 else ">100%"


def _runs(c: Comparison) -> str:
    return str(c.n_current) if c.n_reference == c.n_current else f"{c.n_reference} vs {c.n_current}"


def _pvalue(p: float | None) -> str:
    return "–" if p is None else f"{p:.3g}"


def _sortkey(x: float | None) -> str:
    """A number for the table's sort script; blanks sort last."""
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _environment(run: RunResults) -> tuple[list[tuple], list[tuple]]:
    rows = diff(run.baseline_environment, run.environment)
    headline = [
        r for r in rows if _HEADLINE.search(r[0]) or (run.baseline_environment and r[1] != r[2])
    ]
    return headline, rows


def gate_line(run: RunResults) -> str:
    """The policy the verdicts used, in words."""
    g = run.gate
    if not g:
        return "–"
    parts = [
        f"false alarms at most {g.get('alpha', 0):.0%} per run of the whole suite, "
        f"shared by {g.get('cases', 1)} case(s)"
    ]
    if g.get("looks", 1) > 1:
        parts.append(f"up to {g['looks'] - 1} more run(s) for an inconclusive case")
    if g.get("strict"):
        parts.append("strict: inconclusive fails")
    return "; ".join(parts)


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("pytest_batchperf", "report/templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=_num,
        pct=_pct,
        pct_plain=_pct_plain,
        interval=_interval,
        runs=_runs,
        pvalue=_pvalue,
        sortkey=_sortkey,
        tojson_pretty=lambda d: json.dumps(d, indent=2, sort_keys=True, default=str),
    )
    return env


def render(run: RunResults) -> str:
    fams = families(run)
    chart_groups = [
        (f, [(c, Markup(c.svg)) for c in family_charts(f, i)]) for i, f in enumerate(fams)
    ]
    headline, env_rows = _environment(run)
    return (
        _env()
        .get_template("index.html.j2")
        .render(
            run=run,
            counts=[
                (v.value, run.verdict_counts().get(v.value, 0))
                for v in SEVERITY
                if run.verdict_counts().get(v.value)
            ],
            rows=_rows(run),
            trends=bool(run.history.get("trends")),
            chart_groups=chart_groups,
            env_headline=headline,
            env_rows=env_rows,
            has_reference=bool(run.baseline_environment),
            ab=run.mode is Mode.AB,
            reference_name="reference" if run.mode is Mode.AB else "baseline",
            current_name="candidate" if run.mode is Mode.AB else "now",
            gate_line=gate_line(run),
            suite=[(c.verdict.value, suite_line(c)) for c in run.suite],
            suspected=suspected(run),
            power_pct=f"{run.gate.get('power', 0.8):.0%}",
        )
    )


def write_html(run: RunResults, path: Path) -> Path:
    path = Path(path)
    write_atomic(path, render(run))
    return path
