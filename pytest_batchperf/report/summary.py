"""The short forms: terminal summary lines and summary.md (CI step summary, PR comment)."""

from __future__ import annotations

import math

from ..decision import SEVERITY, Comparison, Verdict
from ..environment import diff
from ..results import CaseResult, RunResults
from .sweeps import sweeps

_ORDER = {v: i for i, v in enumerate(SEVERITY)}
_JUDGED = (Verdict.REGRESSED, Verdict.INCONCLUSIVE, Verdict.IMPROVED, Verdict.ERROR)


def counts_line(run: RunResults) -> str:
    counts = run.verdict_counts()
    parts = [f"{counts[v.value]} {v.value}" for v in SEVERITY if counts.get(v.value)]
    return ", ".join(parts) or "no cases"


def _tok_s(case) -> str:
    m = case.metrics.get("output_tok_s")
    return f"{m.median:,.0f}" if m else "-"


def max_batch_size(sweep) -> int | None:
    """The sweep's feasibility limit, where one of its sizes did not fit (else None)."""
    found = [p.case.metrics["max_batch_size"].median for p in sweep.points
             if "max_batch_size" in p.case.metrics]
    return int(max(found)) if found else None


def terminal_lines(run: RunResults) -> list[str]:
    lines = [
        f"profile {run.profile} on {run.hardware_class}: {counts_line(run)}",
        f"baseline: {run.baseline_path or '-'}" + ("" if run.baseline_environment else " (none yet)"),
    ]
    if run.interrupted:
        lines.append("run was interrupted: results so far are in the reports")
    for case in sorted(run.cases.values(), key=lambda c: (_ORDER[c.verdict], c.case_id)):
        if case.verdict in _JUDGED:
            lines.append(f"{case.verdict.value.upper():>12} {case.case_id}")
            for comp in case.comparisons:
                if comp.verdict in _JUDGED:
                    lines.append(f"{'':>14}{comp.line()}")
            if case.error:
                lines.append(f"{'':>14}{case.error.splitlines()[0]}")
    # Noise guards (contended CPU or GPU, throttled clocks, unsettled warm-up): a verdict
    # taken under them deserves a second look, so they are shown, not buried.
    for case in sorted(run.cases.values(), key=lambda c: c.case_id):
        for w in case.warnings:
            lines.append(f"{'WARNING':>12} {case.case_id}: {w}")
    for sweep in sweeps(run):
        if len(sweep.points) < 2:
            continue
        lines.append(f"sweep {sweep.suite} [{sweep.strategy}]:")
        for p in sweep.points:
            lines.append(f"  Batch size: {p.batch_size:>4}  Throughput: {_tok_s(p.case):>9} tok/s")
        best = sweep.optimal()
        if best:
            lines.append(f"  Optimal batch size: {best.batch_size}")
        fit = max_batch_size(sweep)
        if fit:
            lines.append(f"  Max batch size: {fit} (the next size did not fit)")
    for m in run.missing:
        lines.append(f"{'MISSING':>12} {m} (in the baseline, not run)")
    return lines


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def key_comparison(case: CaseResult) -> Comparison | None:
    """The metric behind the case's verdict: throughput, the one readers look at first,
    when it is among the worst; else the biggest change among them; else throughput."""
    worst = [c for c in case.comparisons if c.verdict is case.verdict and c.verdict in _JUDGED]
    throughput = next((c for c in case.comparisons if c.metric == "output_tok_s"), None)
    if worst and throughput not in worst:
        return max(worst, key=lambda c: abs(c.change) if math.isfinite(c.change) else math.inf)
    return throughput


def markdown(run: RunResults) -> str:
    out = [
        f"## batchperf: {counts_line(run)}",
        "",
        f"Profile `{_esc(run.profile)}` on `{_esc(run.hardware_class)}`; "
        f"baseline `{_esc(run.baseline_path or '-')}`"
        + ("" if run.baseline_environment else " (none yet: every case is new)"),
        "",
    ]
    if run.interrupted:
        out += ["**The run was interrupted**: these are the results so far.", ""]
    changed = [r for r in diff(run.baseline_environment, run.environment) if r[1] != r[2]]
    if run.baseline_environment and changed:
        out += ["| environment | baseline | now |", "| --- | --- | --- |"]
        out += [f"| {_esc(k)} | {_esc(a or '')} | {_esc(b or '')} |" for k, a, b in changed[:20]]
        out.append("")
    out += ["| verdict | case | output tok/s | notes |", "| --- | --- | --- | --- |"]
    for case in sorted(run.cases.values(), key=lambda c: (_ORDER[c.verdict], c.case_id)):
        # One metric per case keeps a 40-case run within a PR comment; index.html has the rest.
        judged = [c for c in case.comparisons if c.verdict in _JUDGED]
        notes = ""
        if judged:
            first = key_comparison(case)
            first = first if first in judged else judged[0]
            notes = first.line() + (f" (+{len(judged) - 1} more)" if len(judged) > 1 else "")
        if case.error:
            notes = case.error.splitlines()[0]
        notes = "; ".join([notes] * bool(notes) + [f"warning: {w}" for w in case.warnings])
        out.append(f"| {case.verdict.value} | `{_esc(case.case_id)}` | {_tok_s(case)} | {_esc(notes)} |")
    for m in run.missing:
        out.append(f"| missing | `{_esc(m)}` | - | in the baseline, not run |")
    opt = [(s, s.optimal()) for s in sweeps(run) if len(s.points) > 1]
    if opt:
        out += ["", "| sweep | strategy | optimal batch size | output tok/s | max batch size |",
                "| --- | --- | --- | --- | --- |"]
        out += [f"| {_esc(s.suite)} | {s.strategy} | {b.batch_size} | {_tok_s(b.case)} | "
                f"{max_batch_size(s) or '-'} |" for s, b in opt if b]
    out += ["", "Charts, the environment diff and every round sample: `index.html` next to this file."]
    return "\n".join(out) + "\n"
