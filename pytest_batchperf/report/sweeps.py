"""Grouping cases into batch-size sweeps, and the optimal batch size of each."""

from __future__ import annotations

from dataclasses import dataclass

from ..judge.results import CaseResult, RunResults


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
        if case.spec is None or not case.metrics:
            continue
        key = (case.suite, *case.spec.sweep_key())
        groups.setdefault(key, []).append(SweepPoint(case.spec.batch_size, case))
    return [
        Sweep(suite, strategy, wk, tuple(sorted(points, key=lambda x: x.batch_size)))
        for (suite, strategy, wk), points in sorted(groups.items())
    ]
