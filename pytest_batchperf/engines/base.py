"""The contract every engine adapter fulfils, and the traces it hands back.

An engine runs one round of a workload under a strategy and returns a RoundTrace:
per-request timestamps on one monotonic clock. Metrics are computed from traces by
``pytest_batchperf.metrics``, never by engines, so every engine is measured alike.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..strategies import Strategy
from ..workload import Request, Workload


class EngineError(RuntimeError):
    """An engine failed a case; the message is shown to the user as it is."""


class EngineUnavailable(EngineError):
    """The engine cannot run here (package missing, no GPU): cases skip with the reason."""


class OutOfMemory(EngineError):
    """The batch did not fit. Sweeps record it as the feasibility limit and go on."""


class EngineCrashed(EngineError):
    """The engine's process died; the engine must be reloaded before the next case."""


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
    # Engine-reported counters for the round (preemptions, kv_cache_tokens ...).
    stats: dict[str, float] = field(default_factory=dict)


def now() -> float:
    return time.perf_counter()


class Engine(ABC):
    """One loaded engine, reused by every case of a session."""

    name: str = "engine"
    #: device the engine computes on; decides the hardware class of the baseline
    device: str = "cpu"
    #: pids whose memory counts for the engine (vLLM's engine core is a child process)
    def pids(self) -> list[int]:
        import os

        return [os.getpid()]

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        """Run every request of ``workload`` once and return their traces."""

    def warmup(self) -> None:
        """Load-time work that must not land in the first measured round."""

    def describe(self) -> dict[str, Any]:
        """Versions, model and knobs: recorded in baselines, diffed in reports."""
        return {"engine": self.name}

    def supports(self, feature: str) -> bool:
        """Optional features: 'priority', 'prefix_cache'."""
        return False

    def close(self) -> None:
        pass
