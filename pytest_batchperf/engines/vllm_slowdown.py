"""The vLLM engine's ``slowdown`` knob, applied inside vLLM's engine core.

A real, proportional slowdown for measuring the gate's power, in one of two places:

- ``host`` (default): after every engine-core step the core busy-waits ``slowdown``
  times that step's own duration. It slows whatever the host thread paces: a small model
  on a fast GPU, any CPU-bound engine. A GPU-bound engine hides it behind GPU work.
- ``gpu``: before every step the core queues a GPU spin kernel (``torch.cuda._sleep``) of
  ``slowdown`` times the engine's own time per step on the stream the model runs on, as
  slower kernels would. A host-bound engine hides it, as it would slower kernels.
  (Measured effects of both: docs/results/h100-vllm.md.)

It is a vLLM general plugin (entry point ``vllm.general_plugins`` in pyproject.toml):
vLLM calls ``register()`` in every process it starts, before the engine core is built,
and the knob reaches the core process through the environment variables below. The engine
also calls it itself each time it builds an engine: vLLM loads plugins once per process,
and an engine core forked from this process inherits this process's EngineCore class. A
sleep would overshoot steps of a few milliseconds and let the CPU drop its clock, so the
host wait is busy.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

ENV = "BATCHPERF_VLLM_SLOWDOWN"
ENV_ON = "BATCHPERF_VLLM_SLOWDOWN_ON"
PLACES = ("host", "gpu")
# A gap this long between steps is the engine idling between rounds, not a step.
IDLE_GAP_S = 0.5
_CALIBRATION_CYCLES = 20_000_000


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

    return _marked(wrapper, fraction, "host")


def gpu_slowed(
    step,
    fraction: float,
    spin: Callable[[int], None] | None = None,
    cycles_per_s: Callable[[], float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
):
    """``step`` preceded by a GPU spin of ``fraction`` times the engine's time per step.

    The time per step is the gap between consecutive calls (on a GPU-bound engine the
    host waits for the GPU, so the gap is the GPU's step time), smoothed, less the spin
    this wrapper itself added; gaps of an idle engine are ignored."""
    spin = spin or _torch_spin
    cycles_per_s = cycles_per_s or functools.cache(_calibrate)
    state: dict[str, Any] = {"last": None, "step_s": 0.0, "added_s": 0.0}

    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        t = clock()
        if state["last"] is not None and t - state["last"] < IDLE_GAP_S:
            own = max(0.0, t - state["last"] - state["added_s"])
            state["step_s"] = own if not state["step_s"] else 0.8 * state["step_s"] + 0.2 * own
        state["last"], state["added_s"] = t, 0.0
        if state["step_s"]:
            state["added_s"] = fraction * state["step_s"]
            spin(int(state["added_s"] * cycles_per_s()))
        return step(*args, **kwargs)

    return _marked(wrapper, fraction, "gpu")


def _marked(wrapper: Any, fraction: float, place: str) -> Any:
    """The wrapper, saying what it does (register() undoes only its own)."""
    wrapper.batchperf_slowdown = fraction
    wrapper.batchperf_slowdown_on = place
    return wrapper


def _torch_spin(cycles: int) -> None:
    import torch

    torch.cuda._sleep(cycles)  # on the calling thread's current stream, as the model runs


def _calibrate(runs: int = 3) -> float:
    """GPU clock cycles per second of ``torch.cuda._sleep``, timed with CUDA events.

    ``_sleep`` counts SM cycles, so its length depends on the clock, and the first spin
    comes after the engine idled: timed cold, every later spin is too short (seen on an
    H100: docs/results/h100-vllm.md). So the clock is brought up first, and the fastest of
    a few runs is the loaded rate."""
    import torch

    torch.cuda._sleep(_CALIBRATION_CYCLES * 5)  # about 50 ms of load before timing
    rates = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(_CALIBRATION_CYCLES)
        end.record()
        end.synchronize()
        rates.append(_CALIBRATION_CYCLES / (start.elapsed_time(end) / 1e3))
    return max(rates)


def register() -> None:
    """EngineCore's steps slowed by the environment's fraction, or restored when unset."""
    fraction = float(os.environ.get(ENV) or 0.0)
    if fraction <= 0 and ENV not in os.environ:
        return  # never asked for: do not even import vLLM's engine core
    wrap = gpu_slowed if os.environ.get(ENV_ON, "host") == "gpu" else slowed
    from vllm.v1.engine.core import EngineCore

    for name in ("step", "step_with_batch_queue"):
        step = getattr(EngineCore, name, None)
        if step is None:
            continue
        original = step.__wrapped__ if hasattr(step, "batchperf_slowdown") else step
        setattr(EngineCore, name, wrap(original, fraction) if fraction > 0 else original)
