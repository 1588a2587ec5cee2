"""The contract every engine adapter fulfils, and what it is built from.

An engine runs one round of a workload under a strategy and returns a RoundTrace
(``measure.trace``). An adapter is built from an ``EngineSpec``: the profile's engine,
device, resolved model and typed knobs (``engines.config``). Adapters know nothing of
baselines, verdicts or pytest.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..measure.trace import RoundTrace
from ..models.resolve import ModelRef
from ..workload.spec import Workload
from ..workload.strategies import Strategy


class EngineError(RuntimeError):
    """An engine failed a case; the message is shown to the user as it is."""


class EngineUnavailable(EngineError):
    """The engine cannot run here (package missing, no GPU): cases skip with the reason."""


class OutOfMemory(EngineError):
    """The batch did not fit. Sweeps record it as the feasibility limit and go on."""


class EngineCrashed(EngineError):
    """The engine's process died; the engine must be reloaded before the next case."""


FEATURES = ("priority", "prefix_cache")


@dataclass(frozen=True)
class EngineSpec:
    """Everything an adapter is built from; plain data, so it travels to the engine's
    child process (which may run another Python: the profile's ``python`` knob)."""

    profile: str  # the profile's name, for messages
    engine: str  # "llama-cpp", ... or "package.module:Class"
    device: str = "cpu"
    model: ModelRef = field(default_factory=lambda: ModelRef("synthetic:tiny"))
    knobs: Any = field(
        default_factory=dict
    )  # the engine's typed config, a dict for custom adapters
    env: Mapping[str, str] = field(default_factory=dict)
    # CPUs the engine's process is pinned to (empty: not pinned); the driver keeps the rest
    cpus: tuple[int, ...] = ()


class Engine(ABC):
    """One loaded engine, reused by every case of a run."""

    name: str = "engine"
    #: device the engine computes on; decides the hardware class of the baseline
    device: str = "cpu"

    def __init__(self, spec: EngineSpec) -> None:
        """What every built-in adapter keeps of its spec; a custom adapter may do as it likes."""
        self.spec, self.knobs, self.device = spec, spec.knobs, spec.device

    def pids(self) -> list[int]:
        """Processes whose memory counts for the engine (children are walked too)."""
        return [os.getpid()]

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        """Run every request of ``workload`` once and return their traces."""

    def warmup(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Load-time work that must not land in the first measured round."""

    def describe(self) -> dict[str, Any]:
        """Versions, model and knobs: recorded in baselines, diffed in reports."""
        return {"engine": self.name}

    def supports(self, feature: str) -> bool:
        """Optional features (FEATURES): 'priority', 'prefix_cache'."""
        return False

    def close(self) -> None:
        return None
