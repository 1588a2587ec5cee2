"""Versioned, frozen results: what a case measured run by run, how it compares, and the run.

The same JSON layout serves ``reports/results.json`` and baseline files, so a run can be
promoted to a baseline and two runs can be compared with the same code. A metric keeps
its rounds run by run in results (``rounds``: one list per run); a baseline keeps only
each run's summary (``runs``: the median of that run's rounds), since runs, not rounds,
are the evidence (a baseline of a single run keeps its rounds: the only evidence of its
noise there is). Schema 1 files (one run, its rounds as ``samples``) load as one run.

Schema 3 adds the jobs (``history.Job``): a run's results.json holds its own job, a baseline
the window of jobs it keeps, and each baseline case the ids of its jobs, oldest first. An
older baseline loads with ids made up for the jobs its metrics counted.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .. import SCHEMA_VERSION, __version__
from ..plan import Side
from ..workload.spec import CaseSpec
from .catalog import Direction, lookup
from .decision import Comparison, Verdict, worst
from .history import Job, legacy_ids


def _median(values: tuple[float, ...]) -> float:
    finite = [x for x in values if math.isfinite(x)]
    return statistics.median(finite) if finite else math.nan


def _round(x: float | None) -> float | None:
    """6 significant digits: enough for any gate, and diffs of baselines stay readable."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.6g}")


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(math.nan if x is None else float(x) for x in values)


class Mode(StrEnum):
    BASELINE = "baseline"  # judged against a committed baseline
    AB = "ab"  # reference and candidate interleaved in one job
    MIXED = "mixed"  # shards of both, merged


@dataclass(frozen=True)
class MetricRuns:
    name: str
    unit: str
    direction: Direction
    runs: tuple[tuple[float, ...], ...] = ()  # each run's rounds (a baseline: its summary)
    jobs: tuple[int, ...] = ()  # a baseline: runs per save job, oldest first (empty: one job)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", Direction(self.direction))  # from JSON: a string

    @property
    def summaries(self) -> tuple[float, ...]:
        """One value per run: the median of its rounds."""
        return tuple(_median(r) for r in self.runs)

    @property
    def median(self) -> float:
        return _median(self.summaries)

    @property
    def rounds(self) -> tuple[float, ...]:
        return tuple(x for r in self.runs for x in r)

    def with_run(self, rounds: Any) -> MetricRuns:
        return replace(self, runs=(*self.runs, _floats(rounds)))

    def to_dict(self, baseline: bool = False) -> dict:
        d: dict[str, Any] = {"unit": self.unit, "direction": self.direction}
        if baseline and len(self.runs) > 1:
            d["runs"] = [_round(x) for x in self.summaries]
        else:  # a single run keeps its rounds: the only evidence of its noise
            d["rounds"] = [[_round(x) for x in r] for r in self.runs]
        if len(self.jobs) > 1:
            d["jobs"] = list(self.jobs)
        return d

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> MetricRuns:
        if "rounds" in d:
            runs = tuple(_floats(r) for r in d["rounds"])
        elif "runs" in d:
            runs = tuple((x,) for x in _floats(d["runs"]))
        else:  # schema 1: the rounds of a single run
            runs = (_floats(d["samples"]),)
        jobs = tuple(int(k) for k in d.get("jobs") or ())
        if sum(jobs) != len(runs):  # hand-edited or truncated: one job
            jobs = ()
        return cls(name, d.get("unit", ""), d.get("direction", Direction.INFO.value), runs, jobs)

    @classmethod
    def build(cls, name: str, runs: Any = ()) -> MetricRuns:
        spec = lookup(name)
        return cls(
            name,
            spec.unit if spec else "",
            spec.direction if spec else Direction.INFO,
            tuple(_floats(r) for r in runs),
        )


@dataclass(frozen=True)
class RunInfo:
    """One run of a case: which engine process (slot) and side, and what disturbed it."""

    slot: int
    side: Side = Side.CANDIDATE
    extension: bool = False  # added because the case was inconclusive
    interference: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "side", Side(self.side))

    def to_dict(self) -> dict:
        return {
            "slot": self.slot,
            "side": self.side,
            "extension": self.extension,
            "interference": dict(self.interference),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunInfo:
        return cls(
            int(d.get("slot", 0)),
            Side(d.get("side", Side.CANDIDATE)),
            bool(d.get("extension", False)),
            dict(d.get("interference") or {}),
        )


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    suite: str = ""
    spec: CaseSpec | None = None  # typed parameters (None: a case that recorded others)
    metrics: Mapping[str, MetricRuns] = field(default_factory=dict)
    # A/B: the reference side's runs, run i paired with the candidate's run i
    reference: Mapping[str, MetricRuns] = field(default_factory=dict)
    comparisons: tuple[Comparison, ...] = ()
    verdict: Verdict = Verdict.NEW
    error: str | None = None
    warnings: tuple[str, ...] = ()
    duration_s: float = 0.0
    runs: tuple[RunInfo, ...] = ()
    raw_params: Mapping[str, Any] = field(default_factory=dict)
    jobs: tuple[str, ...] = ()  # a baseline: the ids of the jobs its runs came from

    @property
    def params(self) -> dict[str, Any]:
        return self.spec.to_dict() if self.spec is not None else dict(self.raw_params)

    @property
    def n_runs(self) -> int:
        return max((len(m.runs) for m in self.metrics.values()), default=0)

    def with_comparisons(self, comparisons: tuple[Comparison, ...]) -> CaseResult:
        verdict = worst(c.verdict for c in comparisons) if comparisons else Verdict.NEW
        return replace(self, comparisons=comparisons, verdict=verdict)

    def to_dict(self, baseline: bool = False) -> dict:
        d: dict[str, Any] = {
            "suite": self.suite,
            "params": self.params,
            "metrics": {k: self.metrics[k].to_dict(baseline) for k in sorted(self.metrics)},
        }
        if baseline and self.jobs:
            d["jobs"] = list(self.jobs)
        if not baseline:
            d.update(
                verdict=self.verdict.value,
                comparisons=[c.to_dict() for c in self.comparisons],
                error=self.error,
                warnings=list(self.warnings),
                duration_s=round(self.duration_s, 3),
                runs=[r.to_dict() for r in self.runs],
            )
            if self.reference:
                d["reference"] = {k: self.reference[k].to_dict() for k in sorted(self.reference)}
        return d

    @classmethod
    def from_dict(cls, case_id: str, d: Mapping[str, Any]) -> CaseResult:
        params = d.get("params", {})
        spec = CaseSpec.from_dict(params) if params else None
        return cls(
            case_id=case_id,
            suite=d.get("suite", ""),
            spec=spec,
            metrics={n: MetricRuns.from_dict(n, m) for n, m in d.get("metrics", {}).items()},
            reference={n: MetricRuns.from_dict(n, m) for n, m in d.get("reference", {}).items()},
            comparisons=tuple(Comparison.from_dict(c) for c in d.get("comparisons", ())),
            verdict=Verdict(d.get("verdict", Verdict.NEW.value)),
            error=d.get("error"),
            warnings=tuple(d.get("warnings", ())),
            duration_s=float(d.get("duration_s", 0.0)),
            runs=tuple(RunInfo.from_dict(r) for r in d.get("runs", ())),
            raw_params={} if spec is not None else dict(params),
            jobs=tuple(str(j) for j in d.get("jobs", ())),
        )

    @property
    def saved_jobs(self) -> int:
        """Jobs a baseline case holds: its job ids, else the most any metric counted."""
        counted = (max(1, len(m.jobs)) for m in self.metrics.values())
        return len(self.jobs) or max(counted, default=0)


@dataclass(frozen=True)
class RunResults:
    profile: str
    hardware_class: str
    environment: Mapping[str, Any]
    cases: Mapping[str, CaseResult]
    kind: str = "run"  # or "baseline"
    created: str = ""
    baseline_path: str | None = None
    # What the run was judged against: the baseline's environment, or in A/B mode the
    # reference side's (mode "ab"), diffed against this run's in the reports.
    baseline_environment: Mapping[str, Any] | None = None
    mode: Mode = Mode.BASELINE
    gate: Mapping[str, Any] = field(default_factory=dict)  # the policy the verdicts used
    notices: tuple[str, ...] = ()  # run-level lines: a 1-run baseline, interference ...
    suite: tuple[Comparison, ...] = ()  # A/B: changes across all cases (gate.suite_effects)
    missing: tuple[str, ...] = ()
    interrupted: bool = False
    # a run: its own job; a baseline: the jobs its cases' runs came from, oldest first
    jobs: tuple[Job, ...] = ()
    # a run judged against a history: its window, change points, wild jobs, drift and
    # each case's trend (``trend.summary``)
    history: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    tool_version: str = __version__

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))

    def verdict_counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for c in self.cases.values():
            counts[c.verdict.value] += 1
        counts[Verdict.MISSING.value] += len(self.missing)
        return {k: n for k, n in counts.items() if n}

    def to_dict(self) -> dict:
        baseline = self.kind == "baseline"
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "pytest-batchperf", "version": self.tool_version},
            "kind": self.kind,
            "profile": self.profile,
            "hardware_class": self.hardware_class,
            "created": self.created,
            "environment": dict(self.environment),
            "cases": {k: self.cases[k].to_dict(baseline) for k in sorted(self.cases)},
        }
        if self.jobs:
            d["jobs"] = [j.to_dict() for j in self.jobs]
        if not baseline:
            d.update(
                mode=self.mode,
                gate=dict(self.gate),
                notices=list(self.notices),
                suite=[c.to_dict() for c in self.suite],
                baseline_path=self.baseline_path,
                baseline_environment=self.baseline_environment,
                missing=list(self.missing),
                interrupted=self.interrupted,
                verdict_counts=self.verdict_counts(),
            )
            if self.history:
                d["history"] = dict(self.history)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResults:
        cases = {k: CaseResult.from_dict(k, v) for k, v in d["cases"].items()}
        jobs = tuple(Job.from_dict(j) for j in d.get("jobs", ()))
        if d.get("kind", "run") == "baseline" and not jobs and cases:
            cases, jobs = _with_legacy_jobs(cases, d.get("created", ""))
        return cls(
            profile=d["profile"],
            hardware_class=d["hardware_class"],
            environment=d.get("environment", {}),
            cases=cases,
            kind=d.get("kind", "run"),
            created=d.get("created", ""),
            baseline_path=d.get("baseline_path"),
            baseline_environment=d.get("baseline_environment"),
            mode=Mode(d.get("mode", Mode.BASELINE)),
            gate=d.get("gate", {}),
            notices=tuple(d.get("notices", ())),
            suite=tuple(Comparison.from_dict(c) for c in d.get("suite", ())),
            missing=tuple(d.get("missing", ())),
            interrupted=bool(d.get("interrupted", False)),
            jobs=jobs,
            history=d.get("history") or {},
            schema_version=int(d["schema_version"]),
            tool_version=d.get("tool", {}).get("version", ""),
        )

    @property
    def runs_per_case(self) -> int:
        """The most runs any case of this file holds (1 for schema-1 baselines)."""
        return max((c.n_runs for c in self.cases.values()), default=0)

    @property
    def saved_jobs(self) -> int:
        """The fewest jobs any case of this baseline holds."""
        return min((c.saved_jobs for c in self.cases.values()), default=0)


def _with_legacy_jobs(
    cases: Mapping[str, CaseResult], created: str
) -> tuple[dict[str, CaseResult], tuple[Job, ...]]:
    """A baseline saved before jobs had records (schema 2): each case gets ids for the jobs
    its metrics counted, the newest shared by every case, as its saves were."""
    most = max(c.saved_jobs for c in cases.values())
    ids = legacy_ids(most)
    out = {cid: replace(c, jobs=ids[most - c.saved_jobs :]) for cid, c in cases.items()}
    return out, tuple(Job(i, created) for i in ids)
