"""The short forms: terminal summary lines and summary.md (CI step summary, PR comment)."""

from __future__ import annotations

import math
import re

from ..judge.catalog import lookup
from ..judge.decision import SEVERITY, Comparison, Verdict
from ..judge.gate import suite_line
from ..judge.results import CaseResult, Mode, RunResults
from ..measure.environment import diff
from .sweeps import Sweep, sweeps

_ORDER = {v: i for i, v in enumerate(SEVERITY)}
_JUDGED = (Verdict.REGRESSED, Verdict.INCONCLUSIVE, Verdict.IMPROVED, Verdict.ERROR)
_WARNINGS_PER_CASE = 3  # the terminal shows this many; the reports keep all


def counts_line(run: RunResults) -> str:
    counts = run.verdict_counts()
    parts = [f"{counts[v.value]} {v.value}" for v in SEVERITY if counts.get(v.value)]
    judged = [c.verdict for c in suite_judged(run)]
    parts += [
        f"{judged.count(v)} metric(s) {v.value} across the suite" for v in SEVERITY if v in judged
    ]
    return ", ".join(parts) or "no cases"


def suspected(run: RunResults) -> list[str]:
    """One line per case with a suspected regression (inconclusive, but worse than twice
    its tolerance): one metric of each family (they share one test), and what would decide
    it."""
    out = []
    for case in sorted(run.cases.values(), key=lambda c: c.case_id):
        found: dict[str, Comparison] = {}
        for c in case.comparisons:
            if c.suspected and c.gated:
                spec = lookup(c.metric)
                found.setdefault(spec.family if spec else c.metric, c)
        if not found:
            continue
        needs = [c.runs_needed for c in found.values() if c.runs_needed]
        need = (
            f"about {min(needs)} runs would decide it"
            if needs
            else "more runs alone cannot decide it here: more saved jobs or A/B mode"
        )
        changes = ", ".join(f"{c.metric} {c.change:+.1%}" for c in found.values())
        out.append(f"{case.case_id}: {changes}, inconclusive; {need}")
    return out


def suite_judged(run: RunResults) -> list[Comparison]:
    """The suite-wide effects whose verdict is not a plain pass."""
    return [c for c in run.suite if c.verdict in _JUDGED]


def _tok_s(case: CaseResult) -> str:
    m = case.metrics.get("output_tok_s")
    return f"{m.median:,.0f}" if m else "-"


def max_batch_size(sweep: Sweep) -> int | None:
    """The sweep's feasibility limit, where one of its sizes did not fit (else None)."""
    found = [
        p.case.metrics["max_batch_size"].median
        for p in sweep.points
        if "max_batch_size" in p.case.metrics
    ]
    return int(max(found)) if found else None


def reference_line(run: RunResults) -> str:
    if run.mode is Mode.AB:
        return "A/B: reference and candidate interleaved in this job, paired run by run"
    return f"baseline: {run.baseline_path or '-'}" + (
        "" if run.baseline_environment else " (none yet)"
    )


def below_noise(run: RunResults) -> list[Comparison]:
    """Judged metrics whose tolerance is tighter than this runner can detect."""
    return [c for case in run.cases.values() for c in case.comparisons if c.below_noise]


def _below_noise_line(run: RunResults) -> str | None:
    found = below_noise(run)
    if not found:
        return None
    cases = len(
        {id(case) for case in run.cases.values() for c in case.comparisons if c.below_noise}
    )
    return (
        f"{len(found)} judged metric(s) in {cases} case(s) have a tolerance below what this "
        'runner can detect ("detectable" in the report): more runs per case, A/B mode or '
        "a quieter runner would let the gate enforce them"
    )


def committed_limit_line(run: RunResults) -> str | None:
    """One line where the committed baseline cannot detect a suite-wide change the size of
    its tolerance on this runner (its jobs move every case together), naming A/B mode."""
    if run.mode is not Mode.BASELINE:
        return None
    tok = next((c for c in run.suite if c.metric == "output_tok_s"), None)
    if tok is None or tok.detectable is None or tok.detectable <= tok.tolerance:
        return None
    return (
        f"against this baseline the run detects a suite-wide output tok/s change of "
        f"{tok.detectable:.0%} or more (tolerance {tok.tolerance:.0%}): this runner's jobs "
        "differ that much; A/B mode (--batchperf-reference) pairs the runs and detects less"
    )


def terminal_lines(run: RunResults) -> list[str]:
    lines = [
        f"profile {run.profile} on {run.hardware_class}: {counts_line(run)}",
        reference_line(run),
    ]
    if run.interrupted:
        lines.append("run was interrupted: results so far are in the reports")
    lines += [f"{'NOTICE':>12} {n}" for n in run.notices]
    lines += [f"{'SUSPECTED':>12} {line}" for line in suspected(run)]
    lines += [f"{c.verdict.value.upper():>12} {suite_line(c)}" for c in suite_judged(run)]
    for case in sorted(run.cases.values(), key=lambda c: (_ORDER[c.verdict], c.case_id)):
        if case.verdict in _JUDGED:
            lines.append(f"{case.verdict.value.upper():>12} {case.case_id}")
            lines += [
                f"{'':>14}{comp.line()}" for comp in case.comparisons if comp.verdict in _JUDGED
            ]
            if case.error:
                lines.append(f"{'':>14}{case.error.splitlines()[0]}")
    # Noise guards (interference, noisy rounds, throttled clocks, unsettled warm-up): a
    # verdict taken under them deserves a second look, so they are shown, not buried.
    for case in sorted(run.cases.values(), key=lambda c: c.case_id):
        for w in case.warnings[:_WARNINGS_PER_CASE]:
            lines.append(f"{'WARNING':>12} {case.case_id}: {w}")
        if len(case.warnings) > _WARNINGS_PER_CASE:
            lines.append(
                f"{'':>14}(+{len(case.warnings) - _WARNINGS_PER_CASE} more warnings in the report)"
            )
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
    for line in (_below_noise_line(run), committed_limit_line(run)):
        if line:
            lines.append(line)
    return lines


def md(text: str) -> str:
    """Text for a Markdown table cell: escaped as Markdown (backslashes), never as HTML."""
    return re.sub(r"([\\|`<])", r"\\\1", str(text)).replace("\n", " ")


def code(text: str) -> str:
    """``text`` as a Markdown code span inside a table cell."""
    text = str(text).replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def key_comparison(case: CaseResult) -> Comparison | None:
    """The metric behind the case's verdict: throughput, the one readers look at first,
    when it is among the worst; else the biggest change among them; else throughput."""
    worst = [c for c in case.comparisons if c.verdict is case.verdict and c.verdict in _JUDGED]
    throughput = next((c for c in case.comparisons if c.metric == "output_tok_s"), None)
    if worst and throughput not in worst:
        return max(worst, key=lambda c: abs(c.change) if math.isfinite(c.change) else math.inf)
    return throughput


def _detectable(case: CaseResult) -> str:
    c = next((c for c in case.comparisons if c.metric == "output_tok_s"), None)
    if c is None or c.detectable is None:
        return "-"
    shown = f"{c.detectable:.0%}" if c.detectable <= 1 else ">100%"
    return shown + (" (above tolerance)" if c.below_noise else "")


def markdown(run: RunResults) -> str:
    ab = run.mode is Mode.AB
    where = (
        "A/B in one job: reference vs candidate, interleaved and paired run by run"
        if ab
        else f"baseline {code(run.baseline_path or '-')}"
        + ("" if run.baseline_environment else " (none yet: every case is new)")
    )
    out = [
        f"## batchperf: {counts_line(run)}",
        "",
        f"Profile {code(run.profile)} on {code(run.hardware_class)}; {where}",
        "",
    ]
    if run.interrupted:
        out += ["**The run was interrupted**: these are the results so far.", ""]
    out += [f"> {md(n)}" for n in run.notices] + ([""] if run.notices else [])
    found = suspected(run)
    if found:
        out += ["| suspected regression (inconclusive, worse than 2x its tolerance) |", "| --- |"]
        out += [f"| {md(line)} |" for line in found] + [""]
    if run.suite:
        out += ["| across the suite | verdict |", "| --- | --- |"]
        out += [f"| {md(suite_line(c))} | {c.verdict.value} |" for c in run.suite] + [""]
    changed = [r for r in diff(run.baseline_environment, run.environment) if r[1] != r[2]]
    if run.baseline_environment and changed:
        side = "reference" if ab else "baseline"
        out += [f"| environment | {side} | {'candidate' if ab else 'now'} |", "| --- | --- | --- |"]
        out += [f"| {md(k)} | {md(a or '')} | {md(b or '')} |" for k, a, b in changed[:20]]
        out.append("")
    out += [
        f"| verdict | case | output tok/s | {'pairs' if ab else 'runs'} | detectable | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
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
        notes = "; ".join([notes] * bool(notes) + [f"warning: {w}" for w in case.warnings[:2]])
        runs = str(case.n_runs)
        out.append(
            f"| {case.verdict.value} | {code(case.case_id)} | {_tok_s(case)} | {runs} | "
            f"{_detectable(case)} | {md(notes)} |"
        )
    for m in run.missing:
        out.append(f"| missing | {code(m)} | - | - | - | in the baseline, not run |")
    opt = [(s, s.optimal()) for s in sweeps(run) if len(s.points) > 1]
    if opt:
        out += [
            "",
            "| sweep | strategy | optimal batch size | output tok/s | max batch size |",
            "| --- | --- | --- | --- | --- |",
        ]
        out += [
            f"| {code(s.suite)} | {s.strategy} | {b.batch_size} | {_tok_s(b.case)} | "
            f"{max_batch_size(s) or '-'} |"
            for s, b in opt
            if b
        ]
    roofline = [
        (case.case_id, case.metrics["roofline_pct"].median)
        for case in run.cases.values()
        if "roofline_pct" in case.metrics
    ]
    if roofline:
        out += ["", "| case | fraction of the decode roofline |", "| --- | --- |"]
        out += [f"| {code(cid)} | {pct:.1f}% |" for cid, pct in sorted(roofline)]
    for line in (_below_noise_line(run), committed_limit_line(run)):
        if line:
            out += ["", md(line)]
    out += [
        "",
        "Charts, the environment diff and every run and round: `index.html` next to this file.",
    ]
    return "\n".join(out) + "\n"
