"""Every option is a CLI flag and an ini key; this module is the one list of them.

Imported when pytest loads the plugin, so it imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .judge import DEFAULT_ALPHA, DEFAULT_KEEP_JOBS

DEFAULT_SAVE_RUNS = 5  # runs per case when saving a baseline (docs/gate.md says why)
DEFAULT_PAIRS = 3  # A/B: interleaved pairs per case (docs/results/cpu-gate.md says why)
DEFAULT_EXTEND = 2  # extra runs (pairs) an inconclusive case may add
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class OptionDef:
    name: str  # ini key; the flag is --batchperf-<name with dashes>
    help: str
    default: Any
    type: str = "string"  # ini type: string, bool, linelist

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS = (
    OptionDef(
        "batchperf_profile",
        "engine profile to run (built-in or [tool.batchperf.profiles.NAME])",
        "default",
    ),
    OptionDef("batchperf_profiles_file", "extra TOML file declaring profiles", ""),
    OptionDef("batchperf_set", "override a profile knob, KEY=VALUE (repeatable)", [], "linelist"),
    OptionDef("batchperf_baseline_dir", "directory of baseline files", "baselines"),
    OptionDef("batchperf_save", "write this run's results into the baseline file", False, "bool"),
    OptionDef(
        "batchperf_baseline_jobs",
        "jobs a baseline keeps (a save or an append of the same setup adds one; the gate "
        f"learns the variance between jobs from them; default: the profile's, else "
        f"{DEFAULT_KEEP_JOBS})",
        "",
    ),
    OptionDef(
        "batchperf_runs",
        f"runs (fresh engine processes) per case (default: {DEFAULT_SAVE_RUNS} when saving, "
        "else 1)",
        "",
    ),
    OptionDef(
        "batchperf_extend",
        f"extra runs an inconclusive case may add, one at a time (default {DEFAULT_EXTEND})",
        str(DEFAULT_EXTEND),
    ),
    OptionDef("batchperf_rounds", "measured rounds per run", "5"),
    OptionDef(
        "batchperf_warmup",
        "minimum warm-up rounds per run (not measured; more run, up to 3, until two in a row "
        "agree within 10%)",
        "1",
    ),
    OptionDef(
        "batchperf_tolerance",
        "METRIC=PCT relative tolerance ('*' for all; repeatable)",
        [],
        "linelist",
    ),
    OptionDef(
        "batchperf_gate_metrics",
        "comma-separated metrics (or families) that can fail a case; the others are shown "
        "with their change and do not spend the false-alarm budget (default: throughput, "
        "TTFT p50, TPOT p50, e2e p95, peak memory and the exact counts)",
        "",
    ),
    OptionDef("batchperf_alpha", "false-alarm rate per run of the whole suite", str(DEFAULT_ALPHA)),
    OptionDef("batchperf_strict", "fail inconclusive cases too", False, "bool"),
    OptionDef(
        "batchperf_require_baseline",
        "fail when this hardware class has no baseline (on by default when $CI is set)",
        False,
        "bool",
    ),
    OptionDef(
        "batchperf_reference",
        "A/B mode: the reference is the profile with this knob changed, KEY=VALUE (repeatable)",
        [],
        "linelist",
    ),
    OptionDef("batchperf_reference_profile", "A/B mode: another profile is the reference", ""),
    OptionDef(
        "batchperf_pairs",
        f"A/B mode: interleaved reference/candidate pairs per case (default {DEFAULT_PAIRS})",
        str(DEFAULT_PAIRS),
    ),
    OptionDef(
        "batchperf_interleave",
        "order of runs: 'pass' (every case's run 1, then run 2 ...), 'case' (a case's runs "
        "back to back, each a fresh engine), or 'auto' (case for A/B on a CPU profile, "
        "else pass)",
        "auto",
    ),
    OptionDef(
        "batchperf_report",
        "directory for index.html, results.json, summary.md ('none' = none)",
        "reports",
    ),
    OptionDef(
        "batchperf_batch_sizes",
        "comma-separated batch sizes for sweeps (default: the profile's, else 1,2,4,8,16,32)",
        "",
    ),
    OptionDef(
        "batchperf_timeout", "seconds a round may take before the case errors (0 = profile's)", "0"
    ),
)


def add_options(parser: Any) -> None:
    group = parser.getgroup("batchperf", "LLM batch inference benchmarks (pytest-batchperf)")
    for opt in OPTIONS:
        if opt.type == "bool":
            group.addoption(
                opt.flag, action="store_true", default=None, dest=opt.name, help=opt.help
            )
        elif opt.type == "linelist":
            group.addoption(opt.flag, action="append", default=None, dest=opt.name, help=opt.help)
        else:
            group.addoption(opt.flag, default=None, dest=opt.name, help=opt.help)
        parser.addini(opt.name, opt.help, type=opt.type, default=opt.default)


def _value(config: Any, opt: OptionDef) -> Any:
    cli = config.getoption(opt.name)
    return cli if cli is not None else config.getini(opt.name)


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in str(text).replace(" ", "").split(",") if x)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{what} {text!r}: every batch size must be >= 1")
    return values


def _gate_metrics(text: str) -> tuple[str, ...]:
    from .judge.catalog import parse_gate_metrics

    try:
        return parse_gate_metrics(text)
    except ValueError as exc:
        raise ValueError(f"--batchperf-gate-metrics: {exc}") from None


def _number(text: Any, what: str, cast: Any = int, minimum: float = 0) -> Any:
    try:
        value = cast(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {text!r} is not a number") from None
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


class Interleave(StrEnum):
    AUTO = "auto"  # case for A/B on a CPU profile, else pass
    PASS = "pass"  # every case's run 1, then every case's run 2 ...
    CASE = "case"  # a case's runs back to back, each a fresh engine


def _interleave(text: Any) -> Interleave:
    value = str(text).strip()
    try:
        return Interleave(value)
    except ValueError:
        choices = ", ".join(Interleave)
        raise ValueError(
            f"--batchperf-interleave must be one of {choices}, got {value!r}"
        ) from None


def in_ci() -> bool:
    """CI services set $CI (GitHub Actions, GitLab, Buildkite, Jenkins' plugins ...)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Options:
    profile: str = "default"
    profiles_file: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    baseline_dir: Path = Path("baselines")
    save: bool = False
    baseline_jobs: int | None = None  # None: the profile's, else DEFAULT_KEEP_JOBS
    runs: int | None = None  # None: DEFAULT_SAVE_RUNS when saving, else 1 (or the profile's)
    extend: int = DEFAULT_EXTEND
    rounds: int = 5
    warmup: int = 1
    tolerances: Mapping[str, float] = field(default_factory=dict)
    alpha: float = DEFAULT_ALPHA
    gate_metrics: tuple[str, ...] = ()  # empty: judge.gate.HEADLINE
    strict: bool = False
    require_baseline: bool = False
    reference: Mapping[str, Any] = field(default_factory=dict)  # A/B: knob overrides
    reference_profile: str = ""  # A/B: another profile
    pairs: int = DEFAULT_PAIRS
    interleave: Interleave = Interleave.AUTO
    report_dir: Path | None = Path("reports")
    batch_sizes: tuple[int, ...] = ()  # empty: the profile's, else DEFAULT_BATCH_SIZES
    timeout_s: float = 0.0

    @property
    def ab(self) -> bool:
        return bool(self.reference or self.reference_profile)

    @classmethod
    def from_config(cls, config: Any) -> Options:
        """Raises ValueError (one line) for bad values."""
        from .judge.catalog import parse_tolerances
        from .profiles import parse_overrides

        v = {opt.name: _value(config, opt) for opt in OPTIONS}
        root = Path(str(config.rootpath))

        def path(text: str) -> Path:
            p = Path(text)
            return p if p.is_absolute() else root / p

        report = str(v["batchperf_report"]).strip()
        alpha = _number(v["batchperf_alpha"], "--batchperf-alpha", float, 0.0)
        if not 0 < alpha < 1:
            raise ValueError(f"--batchperf-alpha must be between 0 and 1, got {alpha}")
        runs = str(v["batchperf_runs"]).strip()
        keep = str(v["batchperf_baseline_jobs"]).strip()
        return cls(
            profile=str(v["batchperf_profile"]),
            profiles_file=path(v["batchperf_profiles_file"])
            if v["batchperf_profiles_file"]
            else None,
            overrides=parse_overrides(v["batchperf_set"]),
            baseline_dir=path(v["batchperf_baseline_dir"]),
            save=bool(v["batchperf_save"]),
            baseline_jobs=_number(keep, "--batchperf-baseline-jobs", int, 1) if keep else None,
            runs=_number(runs, "--batchperf-runs", int, 1) if runs else None,
            extend=_number(v["batchperf_extend"], "--batchperf-extend", int, 0),
            rounds=_number(v["batchperf_rounds"], "--batchperf-rounds", int, 1),
            warmup=_number(v["batchperf_warmup"], "--batchperf-warmup", int, 0),
            tolerances=parse_tolerances(v["batchperf_tolerance"]),
            alpha=alpha,
            gate_metrics=_gate_metrics(str(v["batchperf_gate_metrics"])),
            strict=bool(v["batchperf_strict"]),
            require_baseline=bool(v["batchperf_require_baseline"]) or in_ci(),
            reference=parse_overrides(v["batchperf_reference"], "--batchperf-reference"),
            reference_profile=str(v["batchperf_reference_profile"]).strip(),
            pairs=_number(v["batchperf_pairs"], "--batchperf-pairs", int, 1),
            interleave=_interleave(v["batchperf_interleave"]),
            report_dir=path(report) if report and report.lower() != "none" else None,
            batch_sizes=_int_list(v["batchperf_batch_sizes"], "--batchperf-batch-sizes")
            if str(v["batchperf_batch_sizes"]).strip()
            else (),
            timeout_s=_number(v["batchperf_timeout"], "--batchperf-timeout", float, 0.0),
        )
