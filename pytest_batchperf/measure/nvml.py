"""NVIDIA GPU readings through NVML (nvidia-ml-py), over the GPUs an engine uses.

Every function degrades to None (or empty) when there is no driver or no GPU, so CPU runs
never fail on them. ``gpus`` are NVML indices; readings that add up (memory, energy) come
per GPU, utilisation and clocks averaged.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@functools.cache
def _nvml() -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml if pynvml.nvmlDeviceGetCount() > 0 else None
    except Exception:
        return None


def available() -> bool:
    return _nvml() is not None


def count() -> int:
    nv = _nvml()
    return int(nv.nvmlDeviceGetCount()) if nv else 0


def engine_gpus(n: int) -> tuple[int, ...]:
    """NVML indices of the first ``n`` GPUs the engine's process may see
    (CUDA_VISIBLE_DEVICES, when it names indices, else 0..n-1)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    ids = [int(x) for x in visible.split(",") if x.strip().isdigit()] if visible else []
    ids = ids or list(range(count()))
    return tuple(ids[: max(1, n)])


def _str(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def device_info(gpus: Sequence[int] = (0,)) -> dict | None:
    nv = _nvml()
    if not nv:
        return None
    h = nv.nvmlDeviceGetHandleByIndex(gpus[0])
    info: dict[str, Any] = {
        "gpu": _str(nv.nvmlDeviceGetName(h)),
        "gpu_memory_mib": nv.nvmlDeviceGetMemoryInfo(h).total // (1 << 20),
        "driver": _str(nv.nvmlSystemGetDriverVersion()),
        "gpu_count": nv.nvmlDeviceGetCount(),
        "gpus_used": len(gpus),
    }
    bandwidth = memory_bandwidth_gbs(gpus[0])
    if bandwidth:
        info["gpu_memory_bandwidth_gbs"] = round(bandwidth)
    try:
        v = nv.nvmlSystemGetCudaDriverVersion_v2()
        info["cuda_driver"] = f"{v // 1000}.{v % 1000 // 10}"
    except Exception:
        pass
    return info


def memory_bandwidth_gbs(index: int = 0) -> float | None:
    """Peak memory bandwidth (GB/s) from NVML: maximum memory clock x bus width, two
    transfers per clock (HBM and GDDR report the clock that way)."""
    nv = _nvml()
    if not nv:
        return None
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        mhz = nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)
        bits = nv.nvmlDeviceGetMemoryBusWidth(h)
    except Exception:
        return None
    return mhz * 1e6 * 2 * bits / 8 / 1e9 if mhz and bits else None


# Throttle reasons that mean the clocks are held down by something other than idling.
_THROTTLES = {
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sw_thermal": 0x20,
    "hw_thermal": 0x40,
    "hw_power_brake": 0x80,
}


@dataclass(frozen=True)
class ClockState:
    sm_mhz: int
    max_sm_mhz: int
    throttles: tuple[str, ...]

    @property
    def throttled(self) -> bool:
        """A reason is set and the clock is below its maximum: NVML sets sw_power_cap at
        the maximum clock too, which slows nothing and must not warn."""
        return bool(self.throttles) and self.sm_mhz < self.max_sm_mhz


def clock_state(index: int = 0) -> ClockState | None:
    nv = _nvml()
    if not nv:
        return None
    h = nv.nvmlDeviceGetHandleByIndex(index)
    reasons = 0
    for name in (
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
    ):
        try:
            reasons = getattr(nv, name)(h)
            break
        except Exception:
            continue
    return ClockState(
        sm_mhz=nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
        max_sm_mhz=nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
        throttles=tuple(name for name, bit in _THROTTLES.items() if reasons & bit),
    )


def _processes(index: int) -> list[Any]:
    nv = _nvml()
    try:
        return list(nv.nvmlDeviceGetComputeRunningProcesses(nv.nvmlDeviceGetHandleByIndex(index)))
    except Exception:
        return []


def process_memory_by_gpu(pids: set[int], gpus: Sequence[int] = (0,)) -> dict[int, float] | None:
    """MiB each GPU holds for ``pids`` (None when NVML cannot attribute it per process)."""
    if not available():
        return None
    used = {
        i: [p.usedGpuMemory for p in _processes(i) if p.pid in pids and p.usedGpuMemory]
        for i in gpus
    }
    if not any(used.values()):
        return None
    return {i: sum(v) / (1 << 20) for i, v in used.items()}


def other_processes(ours: set[int], gpus: Sequence[int] = (0,)) -> list[int]:
    """Pids of compute processes on the engine's GPUs that are not in ``ours``."""
    if not available():
        return []
    return sorted({p.pid for i in gpus for p in _processes(i) if p.pid not in ours})


def used_memory_by_gpu(gpus: Sequence[int] = (0,)) -> dict[int, float] | None:
    """MiB in use on each GPU, by anyone."""
    nv = _nvml()
    if not nv:
        return None
    return {
        i: nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(i)).used / (1 << 20)
        for i in gpus
    }


def utilization_pct(gpus: Sequence[int] = (0,)) -> float | None:
    nv = _nvml()
    if not nv:
        return None
    try:
        values = [
            nv.nvmlDeviceGetUtilizationRates(nv.nvmlDeviceGetHandleByIndex(i)).gpu for i in gpus
        ]
    except Exception:
        return None
    return float(sum(values)) / len(values)


def energy_mj_by_gpu(gpus: Sequence[int] = (0,)) -> dict[int, float] | None:
    """Each GPU's energy since driver load, in millijoules (Volta and newer)."""
    nv = _nvml()
    if not nv:
        return None
    try:
        return {
            i: float(nv.nvmlDeviceGetTotalEnergyConsumption(nv.nvmlDeviceGetHandleByIndex(i)))
            for i in gpus
        }
    except Exception:
        return None
