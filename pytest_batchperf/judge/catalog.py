"""The metrics a case records: unit, which direction is better, default tolerance, and the
family each belongs to.

Tolerances are relative (0.10 = 10 %): the smallest change worth failing a gate for; the
statistics decide whether a change that large is real. A/B mode has tighter defaults
(half, at most 5 % for medians): pairing removes the drift between jobs that the
committed-baseline defaults leave room for, so smaller changes become both real and worth
failing for. Metrics of one family are the same
measurement in other units (request, output and total throughput of a seeded workload are
all its count over the round's makespan), so the gate tests a family once: they are not
separate chances to cry wolf. Per-priority-class metrics (``ttft_ms_p95_prio0``) are
looked up by pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class Direction(StrEnum):
    UP = "up"  # higher is better
    DOWN = "down"  # lower is better
    INFO = "info"  # recorded and shown, never judged

    @classmethod
    def _missing_(cls, value: object) -> Direction:
        return cls.INFO  # a direction a newer version wrote: shown, never judged


class Kind(StrEnum):
    TIMED = "timed"  # noisy: judged by tolerance AND statistical evidence
    EXACT = "exact"  # deterministic counts: compared exactly


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    direction: Direction
    tolerance: float
    kind: Kind = Kind.TIMED
    label: str = ""
    family: str = ""  # metrics of one family share one test

    @property
    def judged(self) -> bool:
        return self.direction is not Direction.INFO

    @property
    def ab_tolerance(self) -> float:
        """The default tolerance of A/B mode."""
        return min(self.tolerance / 2, 0.05) if "p9" not in self.name else self.tolerance / 2


def _m(
    name: str,
    unit: str,
    direction: str,
    tolerance: float,
    kind: str = "timed",
    label: str = "",
    family: str = "",
) -> MetricSpec:
    return MetricSpec(
        name, unit, Direction(direction), tolerance, Kind(kind), label or name, family or name
    )


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        _m("throughput_req_s", "1/s", "up", 0.10, label="throughput (req/s)", family="throughput"),
        _m("output_tok_s", "1/s", "up", 0.10, label="output tok/s", family="throughput"),
        _m("total_tok_s", "1/s", "up", 0.10, label="total tok/s", family="throughput"),
        _m("goodput_req_s", "1/s", "up", 0.15, label="goodput (req/s within SLO)"),
        _m("ttft_ms_p50", "ms", "down", 0.15, label="TTFT p50"),
        _m("ttft_ms_p95", "ms", "down", 0.25, label="TTFT p95"),
        _m("ttft_ms_p99", "ms", "down", 0.30, label="TTFT p99"),
        _m("tpot_ms_p50", "ms", "down", 0.15, label="TPOT p50"),
        _m("tpot_ms_p95", "ms", "down", 0.25, label="TPOT p95"),
        _m("itl_ms_p99", "ms", "down", 0.30, label="ITL p99"),
        _m("e2e_ms_p50", "ms", "down", 0.15, label="end-to-end p50"),
        _m("e2e_ms_p95", "ms", "down", 0.25, label="end-to-end p95"),
        _m("e2e_ms_p99", "ms", "down", 0.30, label="end-to-end p99"),
        _m("peak_rss_mib", "MiB", "down", 0.15, label="peak host RSS"),
        _m("peak_gpu_mem_mib", "MiB", "down", 0.10, label="peak GPU memory"),
        _m("gpu_util_pct", "%", "info", 0.0, label="GPU utilisation (mean)"),
        _m("sm_clock_mhz", "MHz", "info", 0.0, label="SM clock (mean)"),
        _m("energy_j_per_tok", "J", "down", 0.15, label="energy per output token"),
        _m("padding_waste_pct", "%", "down", 0.0, "exact", label="padding waste"),
        _m("max_batch_size", "count", "up", 0.0, "exact", label="largest batch that fits"),
        _m("kv_cache_tokens", "tokens", "up", 0.0, "exact", label="KV cache capacity"),
        _m("preemptions", "count", "info", 0.0, label="preemptions"),
        _m("prefix_cache_hit_pct", "%", "up", 0.10, label="prefix-cache hit rate"),
        _m("roofline_pct", "%", "info", 0.0, label="fraction of the decode roofline"),
        _m("output_tokens", "tokens", "info", 0.0, label="output tokens per round"),
        _m("client_cpu_pct", "%", "info", 0.0, label="HTTP client CPU (% of one core)"),
    )
}

# Metrics of one part of a case, named after a base metric, with what the label calls the part
_PARTS = (
    # per priority class: ttft_ms_p50_prio0, ttft_ms_p95_prio1, ...
    (re.compile(r"^(ttft_ms_p50|ttft_ms_p95)_prio(\d+)$"), "priority"),
    # per GPU of a multi-GPU engine (NVML index): peak_gpu_mem_mib_gpu1, energy_j_per_tok_gpu0
    (re.compile(r"^(peak_gpu_mem_mib|energy_j_per_tok)_gpu(\d+)$"), "GPU"),
)


class UnknownMetricError(ValueError):
    pass


def lookup(name: str) -> MetricSpec | None:
    """The metric's spec, per-priority and per-GPU metrics included; None for unknown names."""
    if name in METRICS:
        return METRICS[name]
    for pattern, part in _PARTS:
        m = pattern.match(name)
        if m:
            base = METRICS[m.group(1)]
            label = f"{base.label} ({part} {m.group(2)})"
            return replace(base, name=name, label=label, family=name)
    return None


def spec(name: str) -> MetricSpec:
    found = lookup(name)
    if found is None:
        raise UnknownMetricError(
            f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}"
        ) from None
    return found


def parse_gate_metrics(names: Iterable[str] | str) -> tuple[str, ...]:
    """Metric or family names (a list, or one comma-separated string) that may fail a case.

    Raises ValueError with a one-line message naming the unknown ones and the known ones.
    """
    if isinstance(names, str):
        names = names.split(",")
    chosen = tuple(str(x).strip() for x in names if str(x).strip())
    known = set(METRICS) | {m.family for m in METRICS.values()}
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return chosen


def parse_tolerances(entries: Iterable[str] | None) -> dict[str, float]:
    """Parse ``METRIC=PCT`` entries (``output_tok_s=5`` or ``output_tok_s=5%``).

    ``*`` sets every judged metric. Raises ValueError with a one-line message.
    """
    out: dict[str, float] = {}
    for entry in entries or ():
        entry = entry.strip()
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"tolerance {entry!r} is not METRIC=PCT")
        if name != "*":
            spec(name)
        try:
            pct = float(value.strip().rstrip("%"))
        except ValueError:
            raise ValueError(f"tolerance {entry!r}: {value!r} is not a number") from None
        if not 0 <= pct < 1000:
            raise ValueError(f"tolerance {entry!r}: percentage must be >= 0")
        out[name] = pct / 100.0
    return out
