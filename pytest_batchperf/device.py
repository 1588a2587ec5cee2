"""Where an engine computes: the machine kind that picks the hardware class, the default
noise between jobs and what an engine must check before it starts."""

from __future__ import annotations

import math
from enum import StrEnum


class Device(StrEnum):  # str() and f-strings give "cpu", as torch and JSON want
    CPU = "cpu"
    CUDA = "cuda"

    @property
    def gpu(self) -> bool:
        return self is Device.CUDA

    @classmethod
    def of(cls, text: str | Device) -> Device:
        """``cuda``, ``cuda:1`` (torch's spelling of one GPU) or ``cpu``; ValueError else."""
        return cls(str(text).split(":", 1)[0])


def compute_threads(usable: float | None = None) -> int:
    """Default compute threads of an engine on the host CPU: the usable cores less one, at
    least one. The driver (scheduler, timing, sampler) needs a core of its own: on a
    2-core runner two compute threads beside it spread runs by 19-33 %
    (docs/results/cpu-noise.md)."""
    if usable is None:
        from .measure.interference import usable_cores

        usable = usable_cores()
    return max(1, math.floor(usable + 1e-9) - 1)


def oversubscribed(compute: int, usable: float) -> str | None:
    """One line when an engine's ``compute`` threads and the driver's one need more than
    the ``usable`` cores, else None."""
    if compute + 1 <= usable + 1e-9:
        return None
    return (
        f"the engine computes on {compute} thread(s) and the driver needs a core too, on "
        f"{usable:g} usable cores: runs spread (docs/results/cpu-noise.md); leave the knob "
        f"unset for {compute_threads(usable)}"
    )
