"""Merging runs from several CI runners (shards of one suite) or several hardware
classes and profiles into one run, for one report.

Shards of the same hardware class and profile keep their case ids; a case measured by
two shards is refused rather than silently dropping one. Runs of different hardware
classes or profiles keep every case, prefixed with ``<hardware-class>/<profile>::``,
and the environment of each under that same label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .results import CaseResult, Mode, RunResults


class MergeError(ValueError):
    """Runs that cannot be merged; str() is one line."""


def _label(run: RunResults) -> str:
    return f"{run.hardware_class}/{run.profile}"


def _shards(runs: Sequence[RunResults], names: Sequence[str]) -> RunResults:
    cases: dict[str, CaseResult] = {}
    origin: dict[str, str] = {}
    for run, name in zip(runs, names, strict=True):
        for cid, case in run.cases.items():
            if cid in cases:
                raise MergeError(
                    f"case {cid!r} is in both {origin[cid]} and {name}; "
                    "merge shards that ran disjoint cases"
                )
            cases[cid] = case
            origin[cid] = name
    first = runs[0]
    paths = sorted({r.baseline_path for r in runs if r.baseline_path})
    return replace(
        first,
        kind="run",
        cases=cases,
        created=min((r.created for r in runs if r.created), default=""),
        baseline_path=", ".join(paths) or None,
        baseline_environment=next(
            (r.baseline_environment for r in runs if r.baseline_environment), None
        ),
        # A shard reports baseline cases of its files as missing when another shard ran them.
        missing=tuple(sorted(set().union(*(r.missing for r in runs)) - set(cases))),
        interrupted=any(r.interrupted for r in runs),
    )


def merge(runs: Sequence[RunResults], names: Sequence[str] | None = None) -> RunResults:
    if not runs:
        raise MergeError("nothing to merge")
    names = list(names or [f"run {i + 1}" for i in range(len(runs))])
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(_label(run), []).append(i)
    merged = {
        label: _shards([runs[i] for i in idx], [names[i] for i in idx])
        for label, idx in groups.items()
    }
    if len(merged) == 1:
        return next(iter(merged.values()))

    def ns(label: str, text: str) -> str:
        return f"{label}::{text}"

    cases, missing, env, base_env = {}, [], {}, {}
    for label, run in merged.items():
        for cid, case in run.cases.items():
            cases[ns(label, cid)] = replace(
                case, case_id=ns(label, cid), suite=ns(label, case.suite)
            )
        missing += [ns(label, m) for m in run.missing]
        env[label] = dict(run.environment)
        if run.baseline_environment:
            base_env[label] = dict(run.baseline_environment)
    runs_ = list(merged.values())
    return RunResults(
        profile=", ".join(sorted({r.profile for r in runs_})),
        hardware_class=", ".join(sorted({r.hardware_class for r in runs_})),
        environment=env,
        cases=cases,
        created=min((r.created for r in runs_ if r.created), default=""),
        baseline_path=", ".join(sorted({r.baseline_path for r in runs_ if r.baseline_path}))
        or None,
        baseline_environment=base_env or None,
        missing=tuple(sorted(missing)),
        interrupted=any(r.interrupted for r in runs_),
        mode=runs_[0].mode if len({r.mode for r in runs_}) == 1 else Mode.MIXED,
        gate=runs_[0].gate,
        notices=tuple(f"{label}: {n}" for label, run in merged.items() for n in run.notices),
    )
