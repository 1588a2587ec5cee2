"""The decision rule: is a metric's change real, and big enough to matter?

A metric regresses when its median moved the wrong way by more than its tolerance
AND Welch's t-test on the log round samples says the move is not noise (p < alpha).
Beyond tolerance without that evidence it is ``inconclusive``. Log values make the
test one of ratios, which is how performance changes behave (a 10 % slowdown is the
same evidence at 10 tok/s and at 10,000 tok/s). Welch's t works from 2 rounds a
side; it does not assume equal variance, so a noisier run is not a false alarm by
construction. Deterministic metrics (counts) are compared exactly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np
from scipy import stats

from .catalog import Direction, Kind, MetricSpec


class Verdict(str, Enum):
    PASS = "pass"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"
    MISSING = "missing"
    ERROR = "error"


# Severity order: a case's verdict is its worst metric's.
SEVERITY = [
    Verdict.ERROR,
    Verdict.REGRESSED,
    Verdict.INCONCLUSIVE,
    Verdict.MISSING,
    Verdict.NEW,
    Verdict.IMPROVED,
    Verdict.PASS,
]

DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class Comparison:
    metric: str
    unit: str
    direction: str
    verdict: Verdict
    baseline: float  # median of baseline samples
    current: float  # median of current samples
    change: float  # current / baseline - 1 (medians)
    ci_low: float | None  # interval of the ratio of geometric means, minus 1
    ci_high: float | None
    p_value: float | None
    tolerance: float
    n_baseline: int
    n_current: int
    note: str = ""

    def to_dict(self) -> dict:
        d = self.__dict__.copy()
        d["verdict"] = self.verdict.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Comparison":
        return cls(**{**d, "verdict": Verdict(d["verdict"])})

    def line(self) -> str:
        """One readable line: baseline -> now, change, interval, tolerance."""
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            ci = f", 99% CI [{self.ci_low:+.1%}, {self.ci_high:+.1%}]"
        p = f", p={self.p_value:.3g}" if self.p_value is not None else ""
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.metric}: {_fmt(self.baseline)} -> {_fmt(self.current)} {self.unit} "
            f"({self.change:+.1%}{ci}{p}; tolerance {self.tolerance:.0%}, "
            f"{'higher' if self.direction == 'up' else 'lower'} is better){note}"
        )


def _fmt(x: float) -> str:
    if x != x:
        return "nan"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4g}"


def _clean(samples: Sequence[float]) -> np.ndarray:
    a = np.asarray(samples, dtype=float)
    return a[np.isfinite(a)]


def _worse(direction: Direction, ratio: float, tol: float) -> bool:
    return ratio < 1 - tol if direction is Direction.UP else ratio > 1 + tol


def _better(direction: Direction, ratio: float, tol: float) -> bool:
    return ratio > 1 + tol if direction is Direction.UP else ratio < 1 - tol


def compare(
    spec: MetricSpec,
    baseline: Sequence[float],
    current: Sequence[float],
    tolerance: float | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    tol = spec.tolerance if tolerance is None else tolerance
    b, c = _clean(baseline), _clean(current)
    base = dict(metric=spec.name, unit=spec.unit, direction=spec.direction.value, tolerance=tol,
                n_baseline=len(b), n_current=len(c))
    if not len(b) or not len(c):
        return Comparison(verdict=Verdict.INCONCLUSIVE, baseline=float("nan"),
                          current=float("nan"), change=float("nan"), ci_low=None, ci_high=None,
                          p_value=None, note="no finite samples", **base)
    mb, mc = float(np.median(b)), float(np.median(c))
    if mb == 0:
        ratio = 1.0 if mc == 0 else math.inf
    else:
        ratio = mc / mb
    change = ratio - 1 if math.isfinite(ratio) else math.inf
    if spec.direction is Direction.INFO:
        return Comparison(verdict=Verdict.PASS, baseline=mb, current=mc, change=change,
                          ci_low=None, ci_high=None, p_value=None, note="informational", **base)
    if spec.kind is Kind.EXACT:
        verdict = Verdict.PASS
        # Stored samples keep 6 significant digits (results._round): equal counts read
        # back from a baseline differ from fresh ones by up to 5e-6, relatively.
        if not math.isclose(mb, mc, rel_tol=1e-5, abs_tol=1e-9):
            if _worse(spec.direction, ratio, tol) or (mb == 0 and spec.direction is Direction.DOWN):
                verdict = Verdict.REGRESSED
            elif _better(spec.direction, ratio, tol):
                verdict = Verdict.IMPROVED
        return Comparison(verdict=verdict, baseline=mb, current=mc, change=change, ci_low=None,
                          ci_high=None, p_value=None, note="exact", **base)

    p = lo = hi = None
    note = ""
    positive = (b > 0).all() and (c > 0).all()
    if len(b) >= 2 and len(c) >= 2 and positive and (np.ptp(b) > 0 or np.ptp(c) > 0):
        lb, lc = np.log(b), np.log(c)
        with warnings.catch_warnings():
            # Nearly identical rounds make scipy warn about precision; the verdict stands.
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_ind(lc, lb, equal_var=False)
            p = float(res.pvalue)
            interval = res.confidence_interval(confidence_level=1 - alpha)
            lo, hi = float(np.expm1(interval.low)), float(np.expm1(interval.high))
    else:
        note = "too few rounds for a test: tolerance alone decides"

    evidence = p is None or p < alpha
    if _worse(spec.direction, ratio, tol):
        verdict = Verdict.REGRESSED if evidence else Verdict.INCONCLUSIVE
        if not evidence:
            note = "beyond tolerance but within round-to-round noise"
    elif _better(spec.direction, ratio, tol) and evidence:
        verdict = Verdict.IMPROVED
    else:
        verdict = Verdict.PASS
    return Comparison(verdict=verdict, baseline=mb, current=mc, change=change, ci_low=lo,
                      ci_high=hi, p_value=p, note=note, **base)


def worst(verdicts) -> Verdict:
    verdicts = list(verdicts)
    for v in SEVERITY:
        if v in verdicts:
            return v
    return Verdict.PASS
