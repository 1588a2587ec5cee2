"""What a run ran on: the hardware class that picks the baseline file, and the full
environment recorded in it (and diffed in reports)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re

from . import __version__, nvml

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


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def hardware_class(device: str) -> str:
    """``nvidia-h100-80gb-hbm3`` or ``cpu-amd-epyc-9b14-2c``: the device, not the driver,
    so that a driver upgrade is compared with the old driver's baseline."""
    if device.startswith("cuda"):
        info = nvml.device_info()
        if info:
            name = _slug(info["gpu"])
            gib = round(info["gpu_memory_mib"] / 1024)
            if not re.search(r"\d+gb", name):
                name = f"{name}-{gib}gb"
            return name if name.startswith("nvidia") else f"nvidia-{name}"
        return "cuda-unknown"
    return f"cpu-{_slug(cpu_model())}-{cpu_count()}c"


def package_versions(names=ENGINE_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def capture(device: str, engine_info: dict | None = None) -> dict:
    env = {
        "batchperf": __version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_count": cpu_count(),
        "device": device,
        "packages": package_versions(),
    }
    gpu = nvml.device_info() if device.startswith("cuda") else None
    if gpu:
        env.update(gpu)
    if engine_info:
        env["engine"] = engine_info
    return env


def flatten(env: dict, prefix: str = "") -> dict[str, str]:
    """Nested environment as dotted keys, for diffs."""
    flat = {}
    for key, value in env.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


def diff(baseline: dict | None, current: dict) -> list[tuple[str, str | None, str | None]]:
    """Rows (key, baseline value, current value), changed rows first."""
    a, b = flatten(baseline or {}), flatten(current)
    keys = sorted(set(a) | set(b))
    rows = [(k, a.get(k), b.get(k)) for k in keys]
    return sorted(rows, key=lambda r: r[1] == r[2])
