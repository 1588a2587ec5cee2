"""Batching strategies as admission rules, shared by every engine.

An engine asks the scheduler which queued requests to start now, given how many are
in flight. The rules are the whole difference between the strategies:

- ``sequential``: one request at a time.
- ``static``: waves of B in arrival order; a wave starts when the previous one has
  finished and all of its requests have arrived, so each wave waits for its slowest.
- ``bucketed``: static, but waves are formed from requests of similar prompt length.
- ``dynamic``: static waves of up to B, dispatched when B are queued or the oldest has
  waited ``max_wait_ms``.
- ``continuous``: iteration-level; a finished request's slot is refilled at once, at
  most B in flight.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import Request


_EPS = 1e-9  # seconds


class Strategy(StrEnum):
    SEQUENTIAL = "sequential"
    STATIC = "static"
    BUCKETED = "bucketed"
    DYNAMIC = "dynamic"
    CONTINUOUS = "continuous"

    @property
    def waves(self) -> bool:
        """Strategies whose batches are fixed once started (and so pad)."""
        return self in (Strategy.STATIC, Strategy.BUCKETED, Strategy.DYNAMIC)

    @classmethod
    def parse(cls, value: Strategy | str) -> Strategy:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"unknown strategy {value!r}; choose from {', '.join(s.value for s in cls)}"
            ) from None


class Scheduler:
    """Admission control for one round. Times are seconds from the round's start."""

    def __init__(
        self,
        requests: tuple[Request, ...] | list[Request],
        strategy: Strategy | str,
        batch_size: int,
        max_wait_ms: float = 50.0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.strategy = Strategy.parse(strategy)
        self.batch_size = 1 if self.strategy is Strategy.SEQUENTIAL else batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        ordered = sorted(requests, key=lambda r: (r.arrival_s, r.id))
        if self.strategy is Strategy.BUCKETED:
            # Group by length over the whole round; a wave still waits for its members.
            ordered = sorted(ordered, key=lambda r: (r.prompt_len, r.max_output_tokens, r.id))
        self._pending = deque(ordered)
        self._planned = (
            self._plan_waves(ordered)
            if self.strategy
            in (
                Strategy.STATIC,
                Strategy.BUCKETED,
            )
            else None
        )
        self.waves: list[tuple[Request, ...]] = []

    def _plan_waves(self, ordered: list[Request]) -> deque:
        b = self.batch_size
        return deque(tuple(ordered[i : i + b]) for i in range(0, len(ordered), b))

    @property
    def done(self) -> bool:
        return not self._pending if self._planned is None else not self._planned

    def admit(self, now: float, in_flight: int) -> list[Request]:
        """Requests to start at ``now``; empty when none may start yet."""
        if self.done:
            return []
        if self._planned is not None:
            wave = self._planned[0]
            if in_flight or max(r.arrival_s for r in wave) > now + _EPS:
                return []
            self._planned.popleft()
            for r in wave:
                self._pending.remove(r)
            self.waves.append(wave)
            return list(wave)
        arrived = [r for r in self._pending if r.arrival_s <= now + _EPS]
        if self.strategy is Strategy.DYNAMIC:
            if in_flight or not arrived:
                return []
            full = len(arrived) >= self.batch_size
            # A wake-up computed as arrival + max_wait may land a rounding error short.
            waited = now - arrived[0].arrival_s >= self.max_wait_s - _EPS
            last = len(arrived) == len(self._pending)
            if not (full or waited or last):
                return []
            wave = arrived[: self.batch_size]
            self.waves.append(tuple(wave))
        else:
            wave = arrived[: max(0, self.batch_size - in_flight)]
        for r in wave:
            self._pending.remove(r)
        return wave

    def next_wakeup(self, now: float) -> float | None:
        """When admit() could next return something if nothing finishes before then."""
        if self.done:
            return None
        if self._planned is not None:
            return max(now, *(r.arrival_s for r in self._planned[0]))
        first = self._pending[0].arrival_s
        if self.strategy is Strategy.DYNAMIC and first <= now:
            return max(now, first + self.max_wait_s)
        return max(now, first)


def padding_waste_pct(waves: list[tuple[Request, ...]]) -> float:
    """Share of token positions a padded static batch spends on padding.

    Each wave pads every prompt to the wave's longest and decodes every row for the
    wave's longest output, so waste = 1 - useful / (rows x (max prompt + max output)).
    """
    useful = padded = 0
    for wave in waves:
        if not wave:
            continue
        useful += sum(r.prompt_len + r.max_output_tokens for r in wave)
        padded += len(wave) * (
            max(r.prompt_len for r in wave) + max(r.max_output_tokens for r in wave)
        )
    return 100.0 * (1 - useful / padded) if padded else 0.0
