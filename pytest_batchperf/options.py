"""Every option is a CLI flag and an ini key; this module is the one list of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .catalog import parse_tolerances
from .decision import DEFAULT_ALPHA
from .profiles import parse_overrides


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
    OptionDef("batchperf_profile", "engine profile to run (built-in or [tool.batchperf.profiles.NAME])", "default"),
    OptionDef("batchperf_profiles_file", "extra TOML file declaring profiles", ""),
    OptionDef("batchperf_set", "override a profile knob, KEY=VALUE (repeatable)", [], "linelist"),
    OptionDef("batchperf_baseline_dir", "directory of baseline files", "baselines"),
    OptionDef("batchperf_save", "write this run's results into the baseline file", False, "bool"),
    OptionDef("batchperf_rounds", "measured rounds per case", "5"),
    OptionDef("batchperf_warmup", "minimum warm-up rounds per case (not measured; more run, up to 3, until two in a row agree within 10%)", "1"),
    OptionDef("batchperf_tolerance", "METRIC=PCT relative tolerance ('*' for all; repeatable)", [], "linelist"),
    OptionDef("batchperf_alpha", "significance level of the regression test", str(DEFAULT_ALPHA)),
    OptionDef("batchperf_strict", "fail inconclusive cases too", False, "bool"),
    OptionDef("batchperf_report", "directory for index.html, results.json, summary.md ('' = none)", "reports"),
    OptionDef("batchperf_batch_sizes", "comma-separated batch sizes for sweeps (default: the profile's, else 1,2,4,8,16,32)", ""),
    OptionDef("batchperf_timeout", "seconds a round may take before the case errors (0 = profile's)", "0"),
)


def add_options(parser) -> None:
    group = parser.getgroup("batchperf", "LLM batch inference benchmarks (pytest-batchperf)")
    for opt in OPTIONS:
        if opt.type == "bool":
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.name, help=opt.help)
        elif opt.type == "linelist":
            group.addoption(opt.flag, action="append", default=None, dest=opt.name, help=opt.help)
        else:
            group.addoption(opt.flag, default=None, dest=opt.name, help=opt.help)
        parser.addini(opt.name, opt.help, type=opt.type, default=opt.default)


def _value(config, opt: OptionDef):
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


def _number(text, what: str, cast=int, minimum=0):
    try:
        value = cast(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {text!r} is not a number") from None
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Options:
    profile: str = "default"
    profiles_file: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    baseline_dir: Path = Path("baselines")
    save: bool = False
    rounds: int = 5
    warmup: int = 1
    tolerances: Mapping[str, float] = field(default_factory=dict)
    alpha: float = DEFAULT_ALPHA
    strict: bool = False
    report_dir: Path | None = Path("reports")
    batch_sizes: tuple[int, ...] = ()  # empty: the profile's, else DEFAULT_BATCH_SIZES
    timeout_s: float = 0.0

    @classmethod
    def from_config(cls, config) -> "Options":
        """Raises ValueError (one line) for bad values."""
        v = {opt.name: _value(config, opt) for opt in OPTIONS}
        root = Path(str(config.rootpath))

        def path(text):
            p = Path(text)
            return p if p.is_absolute() else root / p

        report = str(v["batchperf_report"]).strip()
        alpha = _number(v["batchperf_alpha"], "--batchperf-alpha", float, 0.0)
        if not 0 < alpha < 1:
            raise ValueError(f"--batchperf-alpha must be between 0 and 1, got {alpha}")
        return cls(
            profile=str(v["batchperf_profile"]),
            profiles_file=path(v["batchperf_profiles_file"]) if v["batchperf_profiles_file"] else None,
            overrides=parse_overrides(v["batchperf_set"]),
            baseline_dir=path(v["batchperf_baseline_dir"]),
            save=bool(v["batchperf_save"]),
            rounds=_number(v["batchperf_rounds"], "--batchperf-rounds", int, 1),
            warmup=_number(v["batchperf_warmup"], "--batchperf-warmup", int, 0),
            tolerances=parse_tolerances(v["batchperf_tolerance"]),
            alpha=alpha,
            strict=bool(v["batchperf_strict"]),
            report_dir=path(report) if report and report.lower() != "none" else None,
            batch_sizes=_int_list(v["batchperf_batch_sizes"], "--batchperf-batch-sizes")
            if str(v["batchperf_batch_sizes"]).strip() else (),
            timeout_s=_number(v["batchperf_timeout"], "--batchperf-timeout", float, 0.0),
        )
