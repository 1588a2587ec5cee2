"""Grouping cases into batch-size sweeps, and the optimal batch size of each."""

from __future__ import annotations

from dataclasses import dataclass

from ..results import CaseResult, RunResults
from ..workload import sweep_key


@dataclass(frozen=True)
class SweepPoint:
    batch_size: int
    case: CaseResult


@dataclass(frozen=True)
class Sweep:
    suite: str
    strategy: str
    workload_key: str
    points: tuple[SweepPoint, ...]

    def optimal(self, metric: str = "output_tok_s") -> SweepPoint | None:
        scored = [p for p in self.points if metric in p.case.metrics]
        return max(scored, key=lambda p: p.case.metrics[metric].median, default=None)


def sweeps(run: RunResults) -> list[Sweep]:
    groups: dict[tuple[str, str, str], list[SweepPoint]] = {}
    for case in run.cases.values():
        p = case.params
        if "batch_size" not in p or not case.metrics:
            continue
        key = (case.suite, *sweep_key(p))
        groups.setdefault(key, []).append(SweepPoint(int(p["batch_size"]), case))
    return [
        Sweep(suite, strategy, wk, tuple(sorted(points, key=lambda x: x.batch_size)))
        for (suite, strategy, wk), points in sorted(groups.items())
    ]
