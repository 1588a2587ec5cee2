"""What a run ran on: the hardware class that picks the baseline file, and the full
environment recorded in it (and diffed in reports).

A CPU class names the model, the instruction-set level that matters to llama.cpp, the x86
family and model (the microarchitecture) and the core count
(``cpu-amd-epyc-avx512bf16-f25m17-2c``): one ``/proc/cpuinfo`` model name can cover machines
with and without AVX512, or two generations with the same AVX512 flags, twice as fast
apart, which must not share a baseline.

The hardware class names the machine, not what this job was given of it: a job that lost
a core (``taskset -c 0``, a smaller cgroup quota) is judged against its machine's
baseline, and the environment diff says why it is slower (``usable_cores``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .. import __version__
from ..device import Device
from . import nvml
from .interference import usable_cores

ENGINE_PACKAGES = ("llama-cpp-python", "vllm", "torch", "transformers", "pytest-benchmark")


def _slug(text: str) -> str:
    text = re.sub(r"\(R\)|\(TM\)|CPU|Processor|\d+-Core|@.*$", " ", text, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cpuinfo() -> dict[str, str]:
    """The first CPU's ``key: value`` lines of /proc/cpuinfo; empty where it is unreadable."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    if fields:
                        break  # the blank line after the first CPU
                    continue
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The ``flags`` of /proc/cpuinfo's first CPU (x86); empty where there are none."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_uarch() -> str:
    """``f25m17``: the x86 family and model, which tell a microarchitecture apart (AMD
    Genoa from Turin) where the flags and a virtualised model name do not; empty elsewhere."""
    info = _cpuinfo()
    family, model = info.get("cpu family", ""), info.get("model", "")
    return f"f{family}m{model}" if family.isdigit() and model.isdigit() else ""


# Highest first: the level, and the flags it needs (llama.cpp's x86 kernels pick by these).
ISA_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("avx512bf16", ("avx512f", "avx512_bf16")),
    ("avx512vnni", ("avx512f", "avx512_vnni")),
    ("avx512", ("avx512f",)),
    ("avxvnni", ("avx_vnni",)),
    ("avx2", ("avx2",)),
)


def isa_level(flags: Collection[str]) -> str:
    """The highest x86 level of ``flags`` (/proc/cpuinfo tokens) that llama.cpp uses:
    ``avx512bf16``, ``avx512vnni``, ``avx512``, ``avxvnni``, ``avx2``, else ``noavx2``."""
    for level, needs in ISA_LEVELS:
        if all(flag in flags for flag in needs):
            return level
    return "noavx2"


def cpu_isa() -> str:
    """This machine's level (:func:`isa_level`); where /proc/cpuinfo has no x86 flags
    (aarch64, macOS, unreadable), the machine name, e.g. ``aarch64``."""
    flags = cpu_flags()
    return isa_level(flags) if flags else (_slug(platform.machine()) or "unknown")


def machine_cores() -> int:
    """The machine's online CPUs, whatever this process may use of them."""
    return os.cpu_count() or 1


def hardware_class(device: str | Device, gpus: Sequence[int] = (0,)) -> str:
    """``nvidia-h200-140gb``, ``2x-nvidia-h200-140gb`` or
    ``cpu-amd-epyc-9b14-avx512bf16-f25m17-2c`` (CPU model, :func:`cpu_isa` level,
    :func:`cpu_uarch`, the machine's cores): the device and how many of them the engine
    uses, not the driver, so that a driver upgrade is compared with the old driver's
    baseline."""
    if Device.of(device).gpu:
        info = nvml.device_info(gpus)
        if not info:
            return "cuda-unknown"
        name = _slug(info["gpu"])
        if not re.search(r"\d+gb", name):
            name = f"{name}-{round(info['gpu_memory_mib'] / 1024)}gb"
        name = name if name.startswith("nvidia") else f"nvidia-{name}"
        return f"{len(gpus)}x-{name}" if len(gpus) > 1 else name
    parts = (_slug(cpu_model()), cpu_isa(), cpu_uarch(), f"{machine_cores()}c")
    return "cpu-" + "-".join(part for part in parts if part)


def package_versions(names: Sequence[str] = ENGINE_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def capture(
    device: str | Device, gpus: Sequence[int] = (), engine_info: dict | None = None
) -> dict:
    env: dict[str, Any] = {
        "batchperf": __version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "cpu_uarch": cpu_uarch(),
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
