"""Recorded campaigns: raw runs measured once (a GPU budget holds few), judged many times.

A campaign is a list of runs in the order they ran, each a fresh pytest process (one engine
process) measuring the same cases once, of a kind: ``a`` (the profile as it is) or a
changed setup (``e``: enforce_eager, ``g10``: a 10 % GPU-side slowdown ...). From them
``judge`` forms the jobs a user would run and judges them with today's gate:

- A/B: ``pairs`` consecutive (reference, candidate) pairs in run order; A/A pairs are
  consecutive ``a`` runs, and a changed run pairs with the ``a`` run nearest before it;
- committed baseline: the ``save_runs`` ``a`` runs nearest a candidate run (never itself)
  are the baseline, each run one save job (every run here was its own pytest process).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .device import Device
from .judge.catalog import Direction, lookup

_RUN = re.compile(r"^run-(\d+)-([a-z0-9]+)$")


def compact(where: Path) -> dict[str, Any]:
    """``where``'s ``run-NN-KIND/results.json`` files as one compact campaign: every
    judged metric's rounds per case, with the machine they ran on."""
    runs = []
    machine: dict[str, Any] = {}
    walls = _walls(where / "runs.txt")
    for path in sorted(where.glob("run-*/results.json")):
        m = _RUN.match(path.parent.name)
        if not m:
            continue
        data = json.loads(path.read_text())
        machine = machine or _machine(data)
        cases = {
            cid.rsplit("::", 1)[-1]: {
                name: _kept(metric["rounds"])
                for name, metric in sorted(case["metrics"].items())
                if "rounds" in metric and _judged(name)
            }
            for cid, case in data["cases"].items()
        }
        runs.append(
            {
                "run": int(m.group(1)),
                "kind": m.group(2),
                "wall_s": walls.get(path.parent.name),
                "case_s": round(sum(c.get("duration_s", 0) for c in data["cases"].values()), 1),
                "cases": cases,
                "host": _host(data["cases"]),
            }
        )
    return {"profile": machine.pop("profile", ""), "machine": machine, "runs": runs}


def _kept(rounds: Sequence[Sequence[float]]) -> list:
    """A run of one engine process per case keeps its rounds; of K, each process's summary
    (the median of its rounds, what the gate judges) as a list of K one-element lists."""
    if len(rounds) == 1:
        return list(rounds[0])
    return [[round(statistics.median(r), 6)] for r in rounds if r]


def _host(cases: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per case, how its engine process fared on the host CPU while it measured: whether
    our threads waited for a core (an engine starved by the driver), or other work ran."""
    keys = ("runqueue_wait_pct", "foreign_cpu_pct", "steal_pct")
    out = {}
    for cid, case in cases.items():
        runs = case.get("runs") or [{}]
        seen = runs[0].get("interference") or {}
        if seen:
            out[cid.rsplit("::", 1)[-1]] = {k: seen[k] for k in keys if k in seen}
    return out


def dumps(data: Mapping[str, Any]) -> str:
    """One line per run: compact, and a diff shows which run changed."""
    head = {k: v for k, v in data.items() if k != "runs"}
    runs = ",\n".join(json.dumps(r, separators=(",", ":")) for r in data["runs"])
    return json.dumps(head, separators=(",", ":"))[:-1] + ',"runs":[\n' + runs + "\n]}\n"


def _judged(name: str) -> bool:
    spec = lookup(name)
    return spec is not None and spec.direction is not Direction.INFO


def _walls(path: Path) -> dict[str, float]:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, *fields = line.split()
            for f in fields:
                if f.startswith("wall_s="):
                    out[name] = round(float(f.split("=", 1)[1]), 1)
    return out


def _machine(data: Mapping[str, Any]) -> dict[str, Any]:
    env = data.get("environment", {})
    keep = ("gpu", "gpu_memory_mib", "driver", "cuda_driver", "cpu", "cpu_count", "python")
    return {
        "profile": data.get("profile", ""),
        "hardware_class": data.get("hardware_class", ""),
        **{k: env[k] for k in keep if k in env},
        "packages": env.get("packages", {}),
    }


def metric_runs(rounds: Mapping[str, Sequence[Sequence[float]]], jobs: int = 1) -> dict:
    """Each metric's runs (their rounds) as ``MetricRuns``; ``jobs``: equal save jobs the
    runs came from, in order."""
    from dataclasses import replace

    from .judge.results import MetricRuns

    out = {}
    for name, runs in rounds.items():
        m = MetricRuns.build(name, [tuple(r) for r in runs])
        k, extra = divmod(len(runs), jobs)
        out[name] = replace(m, jobs=(k,) * jobs) if jobs > 1 and not extra else m
    return out


def _processes(value: Sequence[Any]) -> list[Sequence[float]]:
    """A compact metric value as its engine processes' rounds: one round list, or K."""
    return [value] if not value or not isinstance(value[0], list) else list(value)


def _side(runs: Sequence[Mapping[str, Any]], cid: str, jobs: int = 1) -> dict:
    """Case ``cid`` of ``runs``, each run's processes in turn, as its metrics' runs."""
    names = runs[0]["cases"][cid]
    return metric_runs(
        {n: [p for r in runs for p in _processes(r["cases"][cid][n])] for n in names}, jobs
    )


def ab_jobs(runs: Sequence[Mapping[str, Any]], kind: str, pairs: int) -> list[list[tuple]]:
    """A/B jobs of ``pairs`` (reference, candidate) runs each, in run order."""
    if kind == "a":
        a = [r for r in runs if r["kind"] == "a"]
        chain = [(a[i], a[i + 1]) for i in range(0, len(a) - 1, 2)]
    else:
        chain = []
        for r in runs:
            if r["kind"] == kind:
                before = [x for x in runs if x["kind"] == "a" and x["run"] < r["run"]]
                if before:
                    chain.append((before[-1], r))
    return [chain[i : i + pairs] for i in range(0, len(chain) - pairs + 1, pairs)]


def committed_jobs(
    runs: Sequence[Mapping[str, Any]], kind: str, save_runs: int
) -> list[tuple[list, Mapping]]:
    """(baseline runs, candidate run) for every run of ``kind``."""
    out = []
    for cand in (r for r in runs if r["kind"] == kind):
        a = [r for r in runs if r["kind"] == "a" and r is not cand]
        a.sort(key=lambda r: abs(r["run"] - cand["run"]))
        if len(a) >= save_runs:
            out.append((sorted(a[:save_runs], key=lambda r: r["run"]), cand))
    return out


def _judge_ab(job: list[tuple], device: Device, profile: str):
    from .judge.gate import GatePolicy, rejudge_ab
    from .judge.results import CaseResult, Mode, RunResults

    cids = list(job[0][0]["cases"])
    refs, cands = [a for a, _ in job], [b for _, b in job]
    cases = {
        cid: CaseResult(cid, "campaign", metrics=_side(cands, cid), reference=_side(refs, cid))
        for cid in cids
    }
    run = RunResults(profile, "", {"device": device}, cases, mode=Mode.AB)
    policy = GatePolicy(looks=3, planned=len(job), paired=True, device=device, pass_order=True)
    return rejudge_ab(run, policy, cids)


def _judge_committed(base: list, cand: Mapping[str, Any], device: Device, profile: str):
    """``cand`` against the baseline of runs ``base``, each its own job (each was its own
    pytest process, as CI jobs are)."""
    from .judge.gate import GatePolicy, compare_runs
    from .judge.history import Job
    from .judge.results import CaseResult, RunResults

    cids = list(cand["cases"])
    ids = tuple(f"run-{r['run']:02d}" for r in base)
    base_cases = {
        cid: CaseResult(cid, "campaign", metrics=_side(base, cid, len(base)), jobs=ids)
        for cid in cids
    }
    cand_cases = {cid: CaseResult(cid, "campaign", metrics=_side([cand], cid)) for cid in cids}
    env = {"device": device}
    baseline = RunResults(profile, "", env, base_cases, kind="baseline", jobs=tuple(map(Job, ids)))
    planned = len(_processes(next(iter(cand["cases"].values()))["output_tok_s"]))
    policy = GatePolicy(looks=3, planned=planned, device=device)
    return compare_runs(RunResults(profile, "", env, cand_cases), baseline, policy)


def judge(data: Mapping[str, Any], pairs: int = 2, save_runs: int = 3) -> list[str]:
    """Markdown: per kind of run, how often each mode's formed jobs failed, per case and
    suite-wide, and what a live job of each mode would cost."""
    from .judge.gate import GatePolicy

    runs, profile = data["runs"], data.get("profile", "")
    device = Device.CUDA if data.get("machine", {}).get("gpu") else Device.CPU
    kinds = list(dict.fromkeys(r["kind"] for r in runs))
    cids = list(runs[0]["cases"])
    lines = [
        "| mode | runs | jobs | failed | by a case | suite-wide | "
        + " | ".join(f"`{c}`" for c in cids)
        + " |",
        "|---" * (6 + len(cids)) + "|",
    ]
    for mode in ("A/B", "committed"):
        for kind in kinds:
            if mode == "A/B":
                judged = [_judge_ab(j, device, profile) for j in ab_jobs(runs, kind, pairs)]
                label = f"{pairs} pairs"
            else:
                judged = [
                    _judge_committed(b, c, device, profile)
                    for b, c in committed_jobs(runs, kind, save_runs)
                ]
                label = f"K={save_runs}"
            if not judged:
                continue
            fails = GatePolicy().fails
            by_case = [any(fails(c.verdict) for c in r.cases.values()) for r in judged]
            suite = [any(fails(c.verdict) for c in r.suite) for r in judged]
            row = f"| {mode}, {label} | `{kind}` | {len(judged)} | "
            failed = sum(a or b for a, b in zip(by_case, suite, strict=True))
            row += f"{failed} | {sum(by_case)} | {sum(suite)} | "
            row += " | ".join(_case_cell([r.cases[c] for r in judged]) for c in cids) + " |"
            lines.append(row)
    walls = [r["wall_s"] for r in runs if r.get("wall_s") and r["kind"] == "a"]
    if walls:
        run_s = statistics.median(walls)
        lines += [
            "",
            f"A run (one engine process, the {len(cids)} cases) took {run_s:.0f} s "
            f"(median of the `a` runs; the first, cold, {walls[0]:.0f} s). Live, an A/B job "
            f"of {pairs} pairs costs about {2 * pairs * run_s:.0f} s, a committed-baseline "
            f"job {run_s:.0f} s (one run; each inconclusive case adds one), and a save of "
            f"K={save_runs} about {save_runs * run_s:.0f} s.",
        ]
    return lines


def history_jobs(
    runs: Sequence[Mapping[str, Any]], kind: str, window: int
) -> list[tuple[list, Mapping]]:
    """(history, candidate) for every run of ``kind`` that has ``window`` unchanged runs
    before it: the history is those runs, each one CI job, as main-branch jobs that passed
    would have joined it."""
    out = []
    for cand in (r for r in runs if r["kind"] == kind):
        before = [r for r in runs if r["kind"] == "a" and r["run"] < cand["run"]]
        if len(before) >= window:
            out.append((before[len(before) - window :], cand))
    return out


def judge_history(data: Mapping[str, Any], windows: Sequence[int]) -> list[str]:
    """Markdown: per history length and kind of run, how often jobs judged against the
    unchanged runs before them (gate v4: the baseline is a history) failed, per case and
    suite-wide, with the suite-wide throughput change of each."""
    from .judge.gate import GatePolicy

    runs, profile = data["runs"], data.get("profile", "")
    device = Device.CUDA if data.get("machine", {}).get("gpu") else Device.CPU
    kinds = list(dict.fromkeys(r["kind"] for r in runs))
    cids = list(runs[0]["cases"])
    fails = GatePolicy().fails
    lines = [
        "| history | runs | jobs | failed | by a case | suite-wide | suite output tok/s | "
        + " | ".join(f"`{c}`" for c in cids)
        + " |",
        "|---" * (7 + len(cids)) + "|",
    ]
    for window in windows:
        for kind in kinds:
            judged = [
                _judge_committed(h, c, device, profile) for h, c in history_jobs(runs, kind, window)
            ]
            if not judged:
                continue
            by_case = [any(fails(c.verdict) for c in r.cases.values()) for r in judged]
            suite = [any(fails(c.verdict) for c in r.suite) for r in judged]
            failed = sum(a or b for a, b in zip(by_case, suite, strict=True))
            changes = " ".join(
                f"{c.change:+.0%}" for r in judged for c in r.suite if c.metric == "output_tok_s"
            )
            lines.append(
                f"| {window} jobs | `{kind}` | {len(judged)} | {failed} | {sum(by_case)} | "
                f"{sum(suite)} | {changes or '-'} | "
                + " | ".join(_case_cell([r.cases[c] for r in judged]) for c in cids)
                + " |"
            )
    return lines


def _case_cell(cases: Sequence[Any]) -> str:
    """``regressed/jobs`` and the median throughput change."""
    from .judge.gate import GatePolicy

    bad = sum(GatePolicy().fails(c.verdict) for c in cases)
    changes = [x.change for c in cases for x in c.comparisons if x.metric == "output_tok_s"]
    mid = f" ({statistics.median(changes):+.0%})" if changes else ""
    return f"{bad}/{len(cases)}{mid}"
