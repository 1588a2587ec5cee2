"""Which runs a case gets, and in what order: plain data, no pytest.

A run (a ``Slot``) is one fresh engine process of one side. Against a committed baseline
every slot is the candidate's; in A/B mode slots alternate reference and candidate in
ABBA order (R C, C R, R C ...), so that drift of the machine falls on both sides alike.
Planned slots run as passes over all cases (slot 1 of every case, then slot 2 ...), so a
slow phase of the machine spreads over many cases instead of sitting in one. Cases that run
their pairs back to back take turns at opening with the candidate (C R, R C, C R ...,
``counterbalanced``): with an odd number of pairs one side holds the first run of the case
and most second runs of a pair, so an effect of a run's place would otherwise move every
case the same way, and the suite-wide test would read it as a change. A case still
inconclusive after its planned runs may add ``extend`` more, one run (or pair) at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Side(StrEnum):
    CANDIDATE = "candidate"
    REFERENCE = "reference"


@dataclass(frozen=True)
class Slot:
    index: int  # 1-based, in run order
    side: Side = Side.CANDIDATE
    extension: bool = False


def _pair(p: int, first: Side = Side.REFERENCE) -> tuple[Side, Side]:
    """Pair ``p`` (1-based) in ABBA order, pair 1 opened by ``first``."""
    other = Side.CANDIDATE if first is Side.REFERENCE else Side.REFERENCE
    return (first, other) if p % 2 else (other, first)


@dataclass(frozen=True)
class Plan:
    runs: int = 1  # runs per case; in A/B mode, pairs
    ab: bool = False
    extend: int = 0  # extra runs (pairs) an inconclusive case may add
    first: Side = Side.REFERENCE  # A/B: the side that opens pair 1

    def _slots(self, first: int, last: int, extension: bool) -> tuple[Slot, ...]:
        if not self.ab:
            return tuple(Slot(i, Side.CANDIDATE, extension) for i in range(first, last + 1))
        return tuple(
            Slot(2 * (p - 1) + k + 1, side, extension)
            for p in range(first, last + 1)
            for k, side in enumerate(_pair(p, self.first))
        )

    def slots(self) -> tuple[Slot, ...]:
        """The planned runs, in order."""
        return self._slots(1, self.runs, False)

    def extension(self, step: int) -> tuple[Slot, ...]:
        """The runs of extension step ``step`` (1-based): one run, or one pair."""
        return self._slots(self.runs + step, self.runs + step, True)

    def counterbalanced(self, ordinal: int) -> Plan:
        """The plan of the ``ordinal``-th (0-based) case run back to back: every other case
        opens with the candidate, so a place effect falls on each side in as many cases."""
        if not self.ab or ordinal % 2 == 0:
            return self
        return replace(self, first=Side.CANDIDATE)

    @property
    def looks(self) -> int:
        """Times a case is judged at most: after its planned runs, then after each step."""
        return 1 + self.extend
