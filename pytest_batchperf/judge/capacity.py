"""The verdict on a batch size that did not fit, from plain values.

A candidate that cannot run a batch size its reference ran (the baseline's case, or the
reference side in A/B mode) regressed in capacity. Where the reference did not fit either,
or a baseline is being saved, the size is beyond the sweep's limit and the case skips. A
reference that does not fit leaves the candidate nothing to be compared with: an error,
never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .catalog import Direction
from .decision import Comparison, Verdict


class Fit(StrEnum):
    SKIP = "skip"  # beyond the sweep's limit
    ERROR = "error"  # the reference does not fit
    REGRESSED = "regressed"  # fitted in the reference, no longer fits


@dataclass(frozen=True)
class CapacityVerdict:
    fit: Fit
    message: str
    comparison: Comparison | None = None


def capacity_verdict(
    size: int,
    candidate: str | None,
    reference: str | None,
    reference_fits: bool,
    ab: bool,
    saving: bool,
) -> CapacityVerdict | None:
    """``candidate``/``reference``: why that side did not fit ``size`` (None: it has not
    failed); ``reference_fits``: the reference ran it. None while nothing is decided."""
    if candidate is None:
        if reference is None:
            return None
        return CapacityVerdict(
            Fit.ERROR,
            f"the reference side does not fit batch size {size}: {reference.splitlines()[0]}",
        )
    if ab and not reference_fits and reference is None:
        return None  # the reference has not run yet
    if not reference_fits or saving:
        return CapacityVerdict(Fit.SKIP, f"batch size {size} does not fit: {candidate}")
    where = "the reference" if ab else "the baseline"
    return CapacityVerdict(
        Fit.REGRESSED,
        f"capacity regressed (max_batch_size): batch size {size} fitted in {where} and no "
        f"longer fits: {candidate.splitlines()[0]}",
        capacity_regression(size, where, candidate),
    )


def capacity_regression(batch_size: int, where: str, error: str) -> Comparison:
    """A batch size that fitted in the reference (``where``) and no longer fits."""
    return Comparison.untested(
        "max_batch_size",
        "count",
        Direction.UP,
        Verdict.REGRESSED,
        reference=float(batch_size),
        n_reference=1,
        note=f"batch size {batch_size} fitted in {where} and no longer fits: {error}",
    )
