"""The vLLM engine's ``slowdown`` knob, applied inside vLLM's engine core.

A real, proportional slowdown for measuring the gate's power: after every engine-core
step the core busy-waits ``slowdown`` times that step's own duration, so the whole
engine runs that much slower on any batch size, with the engine core in its own process
(vLLM's default) or in this one. It is a vLLM general plugin (entry point
``vllm.general_plugins`` in pyproject.toml): vLLM calls ``register()`` in every process
it starts, before the engine core is built, and the knob reaches the core process
through the environment variable below. The engine also calls it itself each time it
builds an engine: vLLM loads plugins once per process, and an engine core forked from
this process inherits this process's EngineCore class. A sleep would overshoot steps of
a few milliseconds and let the CPU drop its clock, so the wait is busy.
"""

from __future__ import annotations

import functools
import os
import time

ENV = "BATCHPERF_VLLM_SLOWDOWN"


def slowed(step, fraction: float):
    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = step(*args, **kwargs)
        end = time.perf_counter()
        deadline = end + fraction * (end - start)
        while time.perf_counter() < deadline:
            pass
        return out

    wrapper.batchperf_slowdown = fraction
    return wrapper


def register() -> None:
    """EngineCore's steps slowed by the environment's fraction, or restored when unset."""
    fraction = float(os.environ.get(ENV) or 0.0)
    if fraction <= 0 and ENV not in os.environ:
        return  # never asked for: do not even import vLLM's engine core
    from vllm.v1.engine.core import EngineCore

    for name in ("step", "step_with_batch_queue"):
        step = getattr(EngineCore, name, None)
        if step is None:
            continue
        original = step.__wrapped__ if hasattr(step, "batchperf_slowdown") else step
        setattr(EngineCore, name, slowed(original, fraction) if fraction > 0 else original)
