"""Engine profiles: a named engine + model + knobs.

Declared in ``[tool.batchperf.profiles.NAME]`` of pyproject.toml or in a TOML file
(same table layout, or top-level ``[profiles.NAME]``). Built-in profiles need no
set-up; ``default`` is the llama-cpp engine on the tiny synthetic model on the CPU.

    [tool.batchperf.profiles.my-vllm]
    engine = "vllm"
    model = "synthetic:1b"          # or a path to a model directory / GGUF file
    gpu_memory_utilization = 0.85   # every other key is an engine knob
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .device import Device, engine_cpus
from .engines import BUILTIN as BUILTIN_ENGINES
from .engines.config import KnobError
from .judge.catalog import parse_gate_metrics, parse_tolerances

if TYPE_CHECKING:
    from .engines.base import EngineSpec
    from .workload.spec import WorkloadSpec

ENGINES = tuple(BUILTIN_ENGINES)
# An engine on several GPUs starts with NVLink multicast off in NCCL, PyTorch and NVSHMEM:
# on shared hosts a program that uses it can take the host's GPUs out of service. A
# profile's own ``env`` wins.
MULTI_GPU_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


class ProfileError(ValueError):
    """Bad profile input; str() is one line for the user."""


@dataclass(frozen=True)
class Profile:
    name: str
    engine: str
    model: str = "synthetic:tiny"
    device: Device = Device.CPU
    knobs: Mapping[str, Any] = field(default_factory=dict)  # the engine's own settings
    # Per-round timeout (s): a hung engine errors the case, the session goes on.
    timeout_s: float = 600.0
    # Run the engine in a process of its own: a crash or hang cannot take pytest down,
    # and every run of a case can be a fresh process.
    isolate: bool = True
    # The interpreter of the engine's process (another virtual environment's, to compare
    # engine versions in one job); default: pytest's own.
    python: str | None = None
    # Environment the engine starts with (OMP_WAIT_POLICY, CUDA_VISIBLE_DEVICES ...);
    # a variable already set by the user wins.
    env: Mapping[str, str] = field(default_factory=dict)
    # Round sizing: every round holds at least this many waves of B requests. GPU
    # profiles set it: CPU-sized workloads would give rounds of a tenth of a second at
    # large B, timing the host's per-step overhead rather than the GPU.
    min_waves: int = 0
    # Default sweep sizes of this profile; --batchperf-batch-sizes and the marker win.
    batch_sizes: tuple[int, ...] = ()
    # Tolerances (fractions) that fit this profile's measured noise; the user's
    # --batchperf-tolerance, ini and marker win, the catalog's defaults fill the rest.
    tolerances: Mapping[str, float] = field(default_factory=dict)
    # Runs (fresh engine processes) per case; the flag, ini and marker win.
    runs: int | None = None
    # Jobs the baseline of this profile keeps; the flag and ini win.
    baseline_jobs: int | None = None
    # Metrics (or families) that may fail a case; empty: the gate's headline set. The
    # flag, ini and marker win.
    gate_metrics: tuple[str, ...] = ()
    source: str = "built-in"

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", Device.of(self.device))  # built-ins spell it

    def with_overrides(
        self, overrides: Mapping[str, Any], where: str = "--batchperf-set"
    ) -> Profile:
        top = _top_level(self.name, {k: v for k, v in overrides.items() if k in _TOP_LEVEL}, where)
        knobs = {k: v for k, v in overrides.items() if k not in _TOP_LEVEL}
        return replace(self, **top, knobs={**self.knobs, **knobs})

    def sized_workload(self, workload: WorkloadSpec, batch_size: int) -> WorkloadSpec:
        """``workload`` with at least ``min_waves`` waves of ``batch_size`` requests."""
        need = self.min_waves * batch_size
        return replace(workload, num_requests=need) if need > workload.num_requests else workload

    def typed_knobs(self) -> Any:
        """The knobs as the engine's typed config (a dict for a custom adapter).
        Raises ProfileError naming an unknown or mistyped knob."""
        builtin = BUILTIN_ENGINES.get(self.engine)
        if builtin is None:
            return dict(self.knobs)
        config = builtin.knobs
        try:
            return config.parse(self.knobs, f"profile {self.name!r}")
        except KnobError as exc:
            raise ProfileError(str(exc)) from None

    def engine_spec(self, resolve: bool = True) -> EngineSpec:
        """What the engine is built from: typed knobs and the model resolved (synthetic
        models written on first use; ``resolve=False`` leaves the name, for an engine that
        cannot run here anyway). Raises ProfileError or ModelError, one line."""
        from .engines.base import EngineSpec
        from .engines.config import model_format
        from .models.resolve import resolve as resolve_model

        knobs = self.typed_knobs()
        fmt = model_format(knobs) if resolve else ""
        env = {**MULTI_GPU_ENV, **self.env} if self.gpus() > 1 else dict(self.env)
        builtin = BUILTIN_ENGINES.get(self.engine)
        pinned = self.isolate and not self.device.gpu and builtin and builtin.computes_in_process
        return EngineSpec(
            self.name,
            self.engine,
            self.device,
            resolve_model(self.model, fmt),
            knobs,
            env,
            engine_cpus() if pinned else (),
        )

    def gpus(self) -> int:
        """GPUs one engine of this profile computes on (0 on the CPU)."""
        if not self.device.gpu:
            return 0
        knobs = self.typed_knobs()
        return knobs.gpus() if hasattr(knobs, "gpus") else 1

    def describe(self) -> dict:
        env = {f"env.{k}": "***" if _SECRET.search(k) else v for k, v in sorted(self.env.items())}
        extra = {k: v for k, v in (("min_waves", self.min_waves), ("python", self.python)) if v}
        return {
            "name": self.name,
            "engine": self.engine,
            "model": self.model,
            "device": self.device,
            **extra,
            **env,
            **{f"knob.{k}": v for k, v in sorted(self.knobs.items())},
        }


# checked by _top_level
_SIZING = (
    "min_waves",
    "batch_sizes",
    "tolerance",
    "runs",
    "baseline_jobs",
    "python",
    "gate_metrics",
)
_TOP_LEVEL = {"engine", "model", "device", "timeout_s", "isolate", "env", *_SIZING}
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.I)

GPU_MIN_WAVES = 8
GPU_BATCH_SIZES = (1, 8, 32, 128, 256)

BUILTIN: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "default",
            "llama-cpp",
            "synthetic:tiny",
            Device.CPU,
            # n_threads unset: the usable cores less one, so that the driver keeps a core
            {"n_ctx": 4096, "n_batch": 512},
        ),
        Profile(
            "llama-cpp-cuda-1b",
            "llama-cpp",
            "synthetic:1b",
            Device.CUDA,
            # 256 sequences (llama.cpp's most) of 32+64 tokens in one unified KV cache
            {
                "n_gpu_layers": -1,
                "n_ctx": 32768,
                "n_batch": 2048,
                "n_seq_max": 256,
                "n_threads": 4,
            },
            min_waves=GPU_MIN_WAVES,
            batch_sizes=(8, 32, 128, 256),  # B=1 is the sequential case
        ),
        Profile(
            "transformers-tiny",
            "transformers",
            "synthetic:tiny",
            Device.CPU,
            {"dtype": "float32"},
        ),
        Profile(
            "transformers-1b",
            "transformers",
            "synthetic:1b",
            Device.CUDA,
            {"dtype": "bfloat16"},
            min_waves=GPU_MIN_WAVES,
            batch_sizes=GPU_BATCH_SIZES,
        ),
        Profile(
            "vllm-synthetic-1b",
            "vllm",
            "synthetic:1b",
            Device.CUDA,
            {
                "gpu_memory_utilization": 0.85,
                "max_model_len": 2048,
                "max_num_seqs": 256,
                "dtype": "bfloat16",
            },
            min_waves=GPU_MIN_WAVES,
            batch_sizes=GPU_BATCH_SIZES,
        ),
        # The GPU-bound vLLM reference (a 1B model's steps are shorter than vLLM's host
        # work per step, so the 1B profile times the host CPU). Half the waves and no B=1
        # sweep point (the sequential case covers it) keep a run short. TPOT p50 is the
        # GPU's own step time and its tolerance is fitted to its noise between processes
        # and hosts (docs/results/h100-vllm.md).
        Profile(
            "vllm-synthetic-8b",
            "vllm",
            "synthetic:8b",
            Device.CUDA,
            {
                "gpu_memory_utilization": 0.85,
                "max_model_len": 2048,
                "max_num_seqs": 256,
                "dtype": "bfloat16",
            },
            min_waves=4,
            batch_sizes=(8, 32, 128),
            tolerances={"tpot_ms_p50": 0.05},
        ),
        # llama.cpp's own server (batchperf build-llama-cpp builds it): 32 slots of 512
        # tokens, the usable cores less one so that the client keeps a core
        # (docs/results/llama-server.md).
        Profile(
            "llama-server-cpu",
            "openai-http",
            "synthetic:tiny",
            Device.CPU,
            {
                "command": [
                    "{llama_server}",
                    "-m",
                    "{model}",
                    "--host",
                    "{host}",
                    "--port",
                    "{port}",
                    "-np",
                    "32",
                    "-cb",
                    "-c",
                    "16384",
                    "-t",
                    "{threads}",
                    "-tb",
                    "{threads}",
                ],
                "prompt_format": "tokens",
                "ignore_eos": True,
                "min_tokens": False,
                "startup_timeout_s": 60,
            },
        ),
        Profile(
            "llama-server-tiny",
            "openai-http",
            "synthetic:tiny",
            Device.CPU,
            {"server": "llama_cpp.server", "n_ctx": 4096, "startup_timeout_s": 120},
        ),
    )
}


def _parse_table(name: str, table: Any, source: str) -> Profile:
    if not isinstance(table, dict):
        raise ProfileError(f"{source}: profile {name!r} is not a table")
    table = dict(table)
    engine = table.pop("engine", None)
    # "package.module:Class" plugs in an adapter of the user's own.
    if engine not in ENGINES and not (isinstance(engine, str) and ":" in engine):
        raise ProfileError(
            f"{source}: profile {name!r} has engine {engine!r}; choose from "
            f"{', '.join(ENGINES)} or give an adapter as 'module:Class'"
        )
    top = {k: table.pop(k) for k in list(table) if k in _TOP_LEVEL}
    device = top.get("device", "cuda" if engine == "vllm" else "cpu")
    env = top.get("env", {})
    if not isinstance(env, dict):
        raise ProfileError(f"{source}: profile {name!r}: env must be a table of variables")
    if device not in ("cpu", "cuda"):
        raise ProfileError(f"{source}: profile {name!r}: device must be 'cpu' or 'cuda'")
    device = Device(device)
    sizing = _top_level(name, {k: top[k] for k in _SIZING if k in top}, source)
    return Profile(
        name=name,
        engine=engine,
        model=str(top.get("model", "synthetic:tiny")),
        device=device,
        knobs=table,
        timeout_s=float(top.get("timeout_s", 600.0)),
        isolate=bool(top.get("isolate", True)),
        env={k: str(v) for k, v in env.items()},
        source=source,
        **sizing,
    )


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _top_level(name: str, values: dict, where: str) -> dict:
    """min_waves, batch_sizes, runs, baseline_jobs, python, gate_metrics and tolerance (a {metric:
    percent} table) checked and converted to Profile fields; other top-level keys pass through."""
    out = dict(values)
    try:
        if "min_waves" in out:
            _count(out["min_waves"], "min_waves", 0)
        if "runs" in out:
            _count(out["runs"], "runs", 1)
        if "baseline_jobs" in out:
            _count(out["baseline_jobs"], "baseline_jobs", 1)
        if "python" in out:
            if not isinstance(out["python"], str) or not out["python"]:
                raise ValueError(
                    f"python must be the path of an interpreter, got {out['python']!r}"
                )
            out["python"] = os.path.expanduser(out["python"])
        if "batch_sizes" in out:
            sizes = out["batch_sizes"]
            if isinstance(sizes, int):
                sizes = [sizes]
            if (
                not isinstance(sizes, list)
                or not sizes
                or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes)
            ):
                raise ValueError(f"batch_sizes must be a list of integers >= 1, got {sizes!r}")
            out["batch_sizes"] = tuple(sizes)
        if "gate_metrics" in out:
            names = out["gate_metrics"]
            if not isinstance(names, list | str):
                raise ValueError(f"gate_metrics must be a list of metric names, got {names!r}")
            try:
                out["gate_metrics"] = parse_gate_metrics(names)
            except ValueError as exc:
                raise ValueError(f"gate_metrics: {exc}") from None
        if "tolerance" in out:
            table = out.pop("tolerance")
            if not isinstance(table, dict):
                raise ValueError("tolerance must be a table of METRIC = percent")
            out["tolerances"] = parse_tolerances(f"{k}={v}" for k, v in table.items())
    except ValueError as exc:
        raise ProfileError(f"{where}: profile {name!r}: {exc}") from None
    return out


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: malformed TOML: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def declared(pyproject: Path | None, extra_file: Path | None = None) -> dict[str, Profile]:
    """Built-in profiles, then pyproject's, then the extra file's (later wins)."""
    profiles = dict(BUILTIN)
    sources = []
    if pyproject is not None and pyproject.is_file():
        data = _read_toml(pyproject)
        sources.append((data.get("tool", {}).get("batchperf", {}).get("profiles", {}), pyproject))
    if extra_file is not None:
        if not extra_file.is_file():
            raise ProfileError(f"{extra_file}: profiles file not found")
        data = _read_toml(extra_file)
        tables = data.get("tool", {}).get("batchperf", {}).get("profiles") or data.get(
            "profiles", {}
        )
        sources.append((tables, extra_file))
    for tables, path in sources:
        for name, table in tables.items():
            profiles[name] = _parse_table(name, table, str(path))
    return profiles


def resolve(
    name: str,
    pyproject: Path | None,
    extra_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Profile:
    profiles = declared(pyproject, extra_file)
    if name not in profiles:
        raise ProfileError(
            f"unknown profile {name!r}; known profiles: {', '.join(sorted(profiles))}"
        )
    profile = profiles[name]
    return profile.with_overrides(overrides) if overrides else profile


def parse_overrides(entries: Any, flag: str = "--batchperf-set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is read as a TOML value, else kept as a string."""
    out: dict[str, Any] = {}
    for entry in entries or ():
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ProfileError(f"{flag} {entry!r} is not KEY=VALUE")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out
