"""Versioned, frozen results: what a case measured, how it compares, and the whole run.

The same JSON layout serves ``reports/results.json`` and baseline files, so a run can
be promoted to a baseline and two runs can be compared with the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from . import SCHEMA_VERSION, __version__
from .catalog import METRICS, Direction
from .decision import Comparison, Verdict, worst


@dataclass(frozen=True)
class MetricSamples:
    name: str
    unit: str
    direction: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        s = sorted(x for x in self.samples if math.isfinite(x))
        if not s:
            return float("nan")
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2

    def to_dict(self) -> dict:
        return {"unit": self.unit, "direction": self.direction,
                "samples": [_round(x) for x in self.samples]}

    @classmethod
    def build(cls, name: str, samples) -> "MetricSamples":
        spec = METRICS.get(name)
        unit = spec.unit if spec else ""
        direction = spec.direction.value if spec else Direction.INFO.value
        return cls(name, unit, direction, tuple(float(x) for x in samples))


def _round(x: float) -> float | None:
    """6 significant digits: enough for any gate, and diffs of baselines stay readable."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.6g}")


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    suite: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, MetricSamples] = field(default_factory=dict)
    comparisons: tuple[Comparison, ...] = ()
    verdict: Verdict = Verdict.NEW
    error: str | None = None
    warnings: tuple[str, ...] = ()
    duration_s: float = 0.0

    def with_comparisons(self, comparisons: tuple[Comparison, ...]) -> "CaseResult":
        verdict = worst(c.verdict for c in comparisons) if comparisons else Verdict.NEW
        return replace(self, comparisons=comparisons, verdict=verdict)

    def to_dict(self, baseline: bool = False) -> dict:
        d: dict[str, Any] = {
            "suite": self.suite,
            "params": dict(self.params),
            "metrics": {k: self.metrics[k].to_dict() for k in sorted(self.metrics)},
        }
        if not baseline:
            d.update(
                verdict=self.verdict.value,
                comparisons=[c.to_dict() for c in self.comparisons],
                error=self.error,
                warnings=list(self.warnings),
                duration_s=round(self.duration_s, 3),
            )
        return d

    @classmethod
    def from_dict(cls, case_id: str, d: Mapping[str, Any]) -> "CaseResult":
        metrics = {
            name: MetricSamples(
                name, m.get("unit", ""), m.get("direction", "info"),
                tuple(float("nan") if x is None else float(x) for x in m["samples"]),
            )
            for name, m in d.get("metrics", {}).items()
        }
        return cls(
            case_id=case_id,
            suite=d.get("suite", ""),
            params=d.get("params", {}),
            metrics=metrics,
            comparisons=tuple(Comparison.from_dict(c) for c in d.get("comparisons", ())),
            verdict=Verdict(d.get("verdict", Verdict.NEW.value)),
            error=d.get("error"),
            warnings=tuple(d.get("warnings", ())),
            duration_s=float(d.get("duration_s", 0.0)),
        )


@dataclass(frozen=True)
class RunResults:
    profile: str
    hardware_class: str
    environment: Mapping[str, Any]
    cases: Mapping[str, CaseResult]
    kind: str = "run"  # or "baseline"
    created: str = ""
    baseline_path: str | None = None
    baseline_environment: Mapping[str, Any] | None = None
    missing: tuple[str, ...] = ()
    interrupted: bool = False
    schema_version: int = SCHEMA_VERSION
    tool_version: str = __version__

    def verdict_counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for c in self.cases.values():
            counts[c.verdict.value] += 1
        counts[Verdict.MISSING.value] += len(self.missing)
        return {k: n for k, n in counts.items() if n}

    def to_dict(self) -> dict:
        baseline = self.kind == "baseline"
        d: dict[str, Any] = {
            "schema_version": self.schema_version,
            "tool": {"name": "pytest-batchperf", "version": self.tool_version},
            "kind": self.kind,
            "profile": self.profile,
            "hardware_class": self.hardware_class,
            "created": self.created,
            "environment": dict(self.environment),
            "cases": {k: self.cases[k].to_dict(baseline) for k in sorted(self.cases)},
        }
        if not baseline:
            d.update(
                baseline_path=self.baseline_path,
                baseline_environment=self.baseline_environment,
                missing=list(self.missing),
                interrupted=self.interrupted,
                verdict_counts=self.verdict_counts(),
            )
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunResults":
        return cls(
            profile=d["profile"],
            hardware_class=d["hardware_class"],
            environment=d.get("environment", {}),
            cases={k: CaseResult.from_dict(k, v) for k, v in d["cases"].items()},
            kind=d.get("kind", "run"),
            created=d.get("created", ""),
            baseline_path=d.get("baseline_path"),
            baseline_environment=d.get("baseline_environment"),
            missing=tuple(d.get("missing", ())),
            interrupted=bool(d.get("interrupted", False)),
            schema_version=int(d["schema_version"]),
            tool_version=d.get("tool", {}).get("version", ""),
        )
