"""What an engine hands back for one round: per-request timestamps on one clock.

Metrics are computed from traces by ``measure.metrics``, never by engines, so every
engine is measured alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..workload.spec import Request


def now() -> float:
    return time.perf_counter()


@dataclass
class RequestTrace:
    """Timestamps (time.perf_counter seconds) of one request's life."""

    request_id: int
    prompt_tokens: int
    arrival: float  # when it was due (round start + arrival offset)
    scheduled: float | None = None  # when the engine took it
    token_times: list[float] = field(default_factory=list)  # one per output token
    finished: float | None = None
    error: str | None = None
    priority: int = 0

    @property
    def first_token(self) -> float | None:
        return self.token_times[0] if self.token_times else None

    @property
    def output_tokens(self) -> int:
        return len(self.token_times)


@dataclass
class RoundTrace:
    start: float
    end: float
    requests: list[RequestTrace]
    waves: list[tuple[Request, ...]] = field(default_factory=list)
    # Engine-reported counters for the round (preemptions, prefix_cache_hit_pct ...).
    stats: dict[str, float] = field(default_factory=dict)
