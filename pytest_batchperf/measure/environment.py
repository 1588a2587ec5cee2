"""What a run ran on: the hardware class that picks the baseline file, and the full
environment recorded in it (and diffed in reports).

The hardware class names the machine, not what this job was given of it: a job that lost
a core (``taskset -c 0``, a smaller cgroup quota) is judged against its machine's
baseline, and the environment diff says why it is slower (``usable_cores``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .. import __version__
from . import nvml
from .interference import usable_cores

ENGINE_PACKAGES = ("llama-cpp-python", "vllm", "torch", "transformers", "pytest-benchmark")


def _slug(text: str) -> str:
    text = re.sub(r"\(R\)|\(TM\)|CPU|Processor|\d+-Core|@.*$", " ", text, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_cores() -> int:
    """The machine's online CPUs, whatever this process may use of them."""
    return os.cpu_count() or 1


def hardware_class(device: str, gpus: Sequence[int] = (0,)) -> str:
    """``nvidia-h200-140gb``, ``2x-nvidia-h200-140gb`` or ``cpu-amd-epyc-9b14-2c``: the
    device and how many of them the engine uses, not the driver, so that a driver upgrade
    is compared with the old driver's baseline."""
    if device.startswith("cuda"):
        info = nvml.device_info(gpus)
        if not info:
            return "cuda-unknown"
        name = _slug(info["gpu"])
        if not re.search(r"\d+gb", name):
            name = f"{name}-{round(info['gpu_memory_mib'] / 1024)}gb"
        name = name if name.startswith("nvidia") else f"nvidia-{name}"
        return f"{len(gpus)}x-{name}" if len(gpus) > 1 else name
    return f"cpu-{_slug(cpu_model())}-{machine_cores()}c"


def package_versions(names: Sequence[str] = ENGINE_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def capture(device: str, gpus: Sequence[int] = (), engine_info: dict | None = None) -> dict:
    env: dict[str, Any] = {
        "batchperf": __version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_count": machine_cores(),
        "usable_cores": round(usable_cores(), 2),
        "device": device,
        "packages": package_versions(),
    }
    gpu = nvml.device_info(gpus) if gpus else None
    if gpu:
        env.update(gpu)
    if engine_info:
        env["engine"] = engine_info
    return env


def flatten(env: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested environment as dotted keys, for diffs."""
    flat = {}
    for key, value in env.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


def diff(
    baseline: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> list[tuple[str, str | None, str | None]]:
    """Rows (key, baseline value, current value), changed rows first."""
    a, b = flatten(baseline or {}), flatten(current)
    rows = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))]
    return sorted(rows, key=lambda r: r[1] == r[2])
