"""Where an engine computes: the machine kind that picks the hardware class, the default
noise between jobs and what an engine must check before it starts."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
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


def compute_threads(usable: float | None = None, pinned: tuple[int, ...] = ()) -> int:
    """Default compute threads of an engine on the host CPU: the usable cores less one, at
    least one (an engine ``pinned`` apart from the driver: its own CPUs). The driver
    (scheduler, timing, sampler) needs a core of its own (docs/results/cpu-noise.md)."""
    if pinned:
        return len(pinned)
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


def engine_cpus() -> tuple[int, ...]:
    """The CPUs an engine computing on the host is pinned to: this process's usable CPUs
    but the first, which the driver keeps (empty with fewer than two). Apart, the two stop
    trading places and caches, and engine processes differ less (docs/results/cpu-noise.md)."""
    if not hasattr(os, "sched_getaffinity"):
        return ()
    usable = sorted(os.sched_getaffinity(0))
    return tuple(usable[1:]) if len(usable) > 1 else ()


@contextlib.contextmanager
def driver_pinned(engine: tuple[int, ...]) -> Iterator[None]:
    """The calling thread, and the threads it starts, kept off the ``engine`` CPUs while
    the block runs (on Linux a thread's affinity is its own); restored after."""
    if not engine or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    rest = before - set(engine)
    if not rest:
        yield
        return
    os.sched_setaffinity(0, rest)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
