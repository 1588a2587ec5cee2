"""What a run is set up with, resolved once and all or nothing before any case runs: the
profiles of both sides and their engine specs, the GPUs, the hardware class and its
baseline (never another class's), the noise priors fitted on that baseline."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import engines
from .engines.base import EngineSpec
from .judge import baseline as baselines
from .judge import gate, trend
from .judge.results import RunResults
from .measure import environment, nvml
from .measure.roofline import DTYPE_BYTES, Roofline
from .options import Options
from .plan import Side
from .profiles import Profile, ProfileError, resolve


@dataclass(frozen=True)
class Prepared:
    profile: Profile  # the candidate's
    sides: Mapping[Side, Profile]  # the candidate's, and in A/B mode the reference's
    specs: Mapping[Side, EngineSpec]
    gpus: tuple[int, ...]  # the GPUs the candidate's engine computes on
    hardware_class: str
    baseline_path: Path
    baseline: RunResults | None  # the window judged against; None: A/B, or none here
    other_classes: tuple[str, ...]  # no baseline here; these classes have one
    priors: Mapping[str, Any]  # fitted on the baseline's cases
    roofline: Roofline | None
    started: str
    history: RunResults | None = None  # the whole baseline file, for its trend
    reading: trend.Reading | None = None  # its change points and wild jobs


def prepare(options: Options, rootdir: Path) -> Prepared:
    """Resolve profiles, models and the baseline. Raises ProfileError, BaselineError or
    ModelError, each one line."""
    o = options
    pyproject = rootdir / "pyproject.toml"
    candidate = resolve(o.profile, pyproject, o.profiles_file, o.overrides)
    sides = {Side.CANDIDATE: candidate}
    if o.reference_profile:
        sides[Side.REFERENCE] = resolve(o.reference_profile, pyproject, o.profiles_file)
    if o.reference:
        base = sides.get(Side.REFERENCE, candidate)
        sides[Side.REFERENCE] = base.with_overrides(o.reference, "--batchperf-reference")
    # No GPU for a GPU profile: its engine skips at start, and writing its synthetic
    # model (gigabytes, minutes) first would be wasted.
    gpu_here = nvml.available()
    specs = {}
    for side, profile in sides.items():
        _check_python(profile)
        specs[side] = profile.engine_spec(resolve=gpu_here or not profile.device.gpu)
    gpus = nvml.engine_gpus(candidate.gpus()) if candidate.device.gpu else ()
    hardware_class = environment.hardware_class(candidate.device, gpus)
    path = baselines.baseline_path(o.baseline_dir, hardware_class, candidate.name)
    history = None if o.ab else baselines.load(path)
    baseline, reading = gate.window(history) if history else (None, None)
    # Another class's baseline (another CPU model, ISA level or core count) is never
    # compared with this machine: under CI the run fails, locally its cases are new
    # and a notice names the classes that have one.
    have = (
        []
        if o.ab or baseline is not None
        else baselines.classes_with(o.baseline_dir, candidate.name)
    )
    if baseline is None and o.require_baseline and not (o.save or o.ab):
        raise baselines.BaselineError(
            f"no baseline of profile {candidate.name!r} for hardware class "
            f"{hardware_class!r} in {o.baseline_dir} (required under CI or "
            f"--batchperf-require-baseline); baselines exist for: "
            f"{', '.join(have) or 'no class'}. Save one on this machine class with "
            "--batchperf-save"
        )
    return Prepared(
        profile=candidate,
        sides=sides,
        specs=specs,
        gpus=gpus,
        hardware_class=hardware_class,
        baseline_path=path,
        baseline=baseline,
        history=history,
        reading=reading,
        other_classes=() if o.save else tuple(have),
        priors=gate.priors(baseline.cases.values()) if baseline else {},
        roofline=_roofline(specs[Side.CANDIDATE], gpus),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _check_python(profile: Profile) -> None:
    """A ``python`` knob must name an interpreter that can run the engine."""
    if not profile.python:
        return
    python = shutil.which(profile.python) or profile.python
    where = f"profile {profile.name!r}: python {profile.python}"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise ProfileError(f"{where} does not exist or is not executable")
    builtin = engines.BUILTIN.get(profile.engine)
    package, extra = (builtin.package, builtin.extra) if builtin else ("", "")
    probe = (
        "import sys, importlib.util as u; v = sys.version_info; "
        f"sys.exit(3 if v < (3, 11) else 4 if {package!r} and not u.find_spec({package!r}) "
        "else 0)"
    )
    try:
        code = subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProfileError(f"{where} cannot be run: {exc}") from None
    if code == 3:
        raise ProfileError(f"{where} is older than Python 3.11, which the engine process needs")
    if code == 4:
        raise ProfileError(
            f"{where} cannot import {package!r}: install the engine into that "
            f"environment (pip install 'pytest-batchperf[{extra}]' or {package})"
        )
    if code != 0:
        raise ProfileError(f"{where} failed to start (exit code {code})")


def _roofline(spec: EngineSpec, gpus: tuple[int, ...]) -> Roofline | None:
    """The decode roofline where the model's shape and the GPU's bandwidth are known."""
    if not gpus or spec.model.shape is None:
        return None
    bandwidth = nvml.memory_bandwidth_gbs(gpus[0])
    if not bandwidth:
        return None
    knobs = spec.knobs
    dtype = getattr(knobs, "dtype", None) or "bfloat16"
    weight = DTYPE_BYTES.get(str(dtype), 2)
    kv = DTYPE_BYTES.get(str(getattr(knobs, "kv_cache_dtype", None) or dtype), weight)
    return Roofline(spec.model.shape, bandwidth * len(gpus), weight, kv)
