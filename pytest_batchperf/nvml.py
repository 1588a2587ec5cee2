"""NVIDIA GPU readings through NVML (nvidia-ml-py). Every function degrades to None
when there is no driver or no GPU, so CPU runs never fail on them."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import psutil

try:
    import pynvml
except ImportError:  # pragma: no cover - nvidia-ml-py is a core dependency
    pynvml = None


@functools.lru_cache(maxsize=1)
def available() -> bool:
    if pynvml is None:
        return False
    try:
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def _handle(index: int = 0):
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def device_info(index: int = 0) -> dict | None:
    if not available():
        return None
    h = _handle(index)
    info = {
        "gpu": _str(pynvml.nvmlDeviceGetName(h)),
        "gpu_memory_mib": pynvml.nvmlDeviceGetMemoryInfo(h).total // (1 << 20),
        "driver": _str(pynvml.nvmlSystemGetDriverVersion()),
        "gpu_count": pynvml.nvmlDeviceGetCount(),
    }
    try:
        v = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        info["cuda_driver"] = f"{v // 1000}.{v % 1000 // 10}"
    except Exception:
        pass
    return info


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
        the maximum clock too (an H100 under load: "SM at 1980 of 1980 MHz"), which
        slows nothing and must not warn."""
        return bool(self.throttles) and self.sm_mhz < self.max_sm_mhz


def clock_state(index: int = 0) -> ClockState | None:
    if not available():
        return None
    h = _handle(index)
    try:
        reasons = pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
    except Exception:
        try:
            reasons = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        except Exception:
            reasons = 0
    return ClockState(
        sm_mhz=pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        max_sm_mhz=pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        throttles=tuple(name for name, bit in _THROTTLES.items() if reasons & bit),
    )


def process_memory_mib(pids: set[int], index: int = 0) -> float | None:
    """GPU memory used by ``pids`` (None when NVML cannot attribute it per process)."""
    if not available():
        return None
    h = _handle(index)
    try:
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    except Exception:
        return None
    used = [p.usedGpuMemory for p in procs if p.pid in pids and p.usedGpuMemory]
    return sum(used) / (1 << 20) if used else None


def other_processes(pids: set[int], index: int = 0) -> list[int]:
    """Pids of compute processes on the GPU that are not ours or our children (noise
    sources; vLLM's engine core is a child of the engine's process)."""
    if not available():
        return []
    try:
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(_handle(index))
    except Exception:
        return []
    ours = set(pids)
    for pid in pids:
        try:
            ours.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    return sorted(p.pid for p in procs if p.pid not in ours)


def used_memory_mib(index: int = 0) -> float | None:
    if not available():
        return None
    return pynvml.nvmlDeviceGetMemoryInfo(_handle(index)).used / (1 << 20)


def utilization_pct(index: int = 0) -> float | None:
    if not available():
        return None
    try:
        return float(pynvml.nvmlDeviceGetUtilizationRates(_handle(index)).gpu)
    except Exception:
        return None


def energy_mj(index: int = 0) -> float | None:
    """Total energy since driver load, in millijoules (Volta and newer)."""
    if not available():
        return None
    try:
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(_handle(index)))
    except Exception:
        return None
