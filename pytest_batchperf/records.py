"""A case's runs as they come in, side by side, and what the session answers the fixture.

Plain data and no pytest: the session fills a ``CaseRecord`` run by run (``add``) and
judges ``result()``; ``CaseOutcome`` says what pytest should do with the case.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from .judge.results import CaseResult, MetricRuns, RunInfo
from .measure import interference
from .measure.runner import Rounds, RunMeasurement
from .plan import Side, Slot
from .workload.spec import CaseSpec


class Action(StrEnum):
    PENDING = "pending"  # more runs of this case come in later passes
    PASS = "pass"
    WARN = "warn"  # inconclusive: shown, fails only under --batchperf-strict
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CaseOutcome:
    result: CaseResult
    action: Action
    message: str = ""


@dataclass(frozen=True)
class CaseSettings:
    rounds: Rounds = field(default_factory=Rounds)
    runs: int | None = None  # the marker's
    tolerances: Mapping[str, float] = field(default_factory=dict)
    gate_metrics: tuple[str, ...] = ()  # the marker's; empty: the session's


@dataclass
class _SideRuns:
    metrics: dict[str, MetricRuns] = field(default_factory=dict)
    runs: list[RunInfo] = field(default_factory=list)
    infeasible: str | None = None


@dataclass
class CaseRecord:
    case_id: str
    suite: str
    spec: CaseSpec
    settings: CaseSettings
    started: float = field(default_factory=time.monotonic)
    sides: dict[Side, _SideRuns] = field(default_factory=lambda: {s: _SideRuns() for s in Side})
    warnings: list[str] = field(default_factory=list)

    def add(self, slot: Slot, m: RunMeasurement) -> None:
        side = self.sides[slot.side]
        n = len(side.runs)
        for name, values in m.metrics.items():
            runs = side.metrics.get(name) or MetricRuns.build(name, [()] * n)
            side.metrics[name] = runs.with_run(values)
        for name, runs in side.metrics.items():  # a metric this run lacked: an empty run
            if name not in m.metrics:
                side.metrics[name] = runs.with_run(())
        disturbance = m.interference.to_dict() if m.interference else {}
        side.runs.append(RunInfo(slot.index, slot.side, slot.extension, disturbance))
        prefix = f"{slot.side.value} " if slot.side is Side.REFERENCE else ""
        self.warnings.extend(
            f"{prefix}run {len(side.runs)}: {w}"
            for w in m.warnings
            if f"{prefix}run {len(side.runs)}: {w}" not in self.warnings
        )

    def count(self, side: Side) -> int:
        return len(self.sides[side].runs)

    def disturbed(self) -> tuple[bool, ...]:
        """Each candidate run (A/B: each pair) that other work on the machine disturbed."""
        ref = [was_disturbed(r.interference) for r in self.sides[Side.REFERENCE].runs]
        return tuple(
            was_disturbed(r.interference) or (i < len(ref) and ref[i])
            for i, r in enumerate(self.sides[Side.CANDIDATE].runs)
        )

    def quiet_runs(self) -> tuple[int, ...] | None:
        """The undisturbed runs (pairs), where some but not all were disturbed; else None."""
        flags = self.disturbed()
        quiet = tuple(i for i, d in enumerate(flags) if not d)
        return quiet if 0 < len(quiet) < len(flags) else None

    def remeasured_note(self, remeasured: int) -> tuple[str, bool]:
        """The warning of a regression measured again after a disturbed run, and whether
        its verdict still rests on disturbed runs."""
        keep = self.quiet_runs()
        if keep is not None:
            return (
                f"other work disturbed a run that regressed: measured {remeasured} more "
                f"run(s), judged on the {len(keep)} quiet one(s)",
                False,
            )
        return (
            f"other work disturbed a run that regressed: measured {remeasured} more run(s), "
            "none quiet: the verdict rests on disturbed runs",
            True,
        )

    def result(
        self,
        error: str | None = None,
        side: Side = Side.CANDIDATE,
        keep: tuple[int, ...] | None = None,
    ) -> CaseResult:
        """The case so far; ``metrics`` are ``side``'s (the candidate's, once judged);
        ``keep``: only these runs (pairs) of both sides, as judged (the others left out)."""
        ref, cand = self.sides[Side.REFERENCE], self.sides[Side.CANDIDATE]

        def kept(m: MetricRuns) -> MetricRuns:
            return m if keep is None else replace(m, runs=tuple(m.runs[i] for i in keep))

        def infos(runs: list[RunInfo]) -> list[RunInfo]:
            return runs if keep is None else [runs[i] for i in keep if i < len(runs)]

        metrics = {
            n: kept(m)
            for n, m in self.sides[side].metrics.items()
            if any(math.isfinite(x) for x in m.rounds)
        }
        return CaseResult(
            case_id=self.case_id,
            suite=self.suite,
            spec=self.spec,
            metrics=metrics,
            reference={n: kept(m) for n, m in ref.metrics.items()},
            error=error,
            warnings=tuple(self.warnings),
            duration_s=time.monotonic() - self.started,
            runs=tuple(infos(ref.runs) + infos(cand.runs)),
        )


def was_disturbed(disturbance: Mapping[str, float]) -> bool:
    """Whether other work on the machine disturbed a run (its interference reading)."""
    try:
        return bool(interference.Interference(**disturbance).warnings()) if disturbance else False
    except TypeError:
        return False
