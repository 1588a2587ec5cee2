"""Per-round metrics from a RoundTrace. Engines never compute metrics themselves."""

from __future__ import annotations

import numpy as np

from ..workload.spec import SLO
from ..workload.strategies import padding_waste_pct
from .trace import RoundTrace


def _pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


class TraceError(RuntimeError):
    """A round's trace cannot be summarised (failed requests, no tokens)."""


def round_metrics(
    trace: RoundTrace, slo: SLO | None = None, waves: bool = False
) -> dict[str, float]:
    slo = slo or SLO()
    done = [r for r in trace.requests if r.error is None and r.token_times]
    failed = [r for r in trace.requests if r.error is not None]
    if failed:
        first = failed[0]
        raise TraceError(
            f"{len(failed)} of {len(trace.requests)} requests failed; "
            f"request {first.request_id}: {first.error}"
        )
    makespan = trace.end - trace.start
    if not done or makespan <= 0:
        raise TraceError("the round produced no tokens")
    out_tokens = sum(r.output_tokens for r in done)
    prompt_tokens = sum(r.prompt_tokens for r in done)
    ttft = [(r.token_times[0] - r.arrival) * 1e3 for r in done]
    e2e = [(r.token_times[-1] - r.arrival) * 1e3 for r in done]
    tpot = [
        (r.token_times[-1] - r.token_times[0]) * 1e3 / (r.output_tokens - 1)
        for r in done
        if r.output_tokens > 1
    ]
    itl = np.concatenate([np.diff(r.token_times) * 1e3 for r in done])
    m = {
        "throughput_req_s": len(done) / makespan,
        "output_tok_s": out_tokens / makespan,
        "total_tok_s": (out_tokens + prompt_tokens) / makespan,
        "ttft_ms_p50": _pct(ttft, 50),
        "ttft_ms_p95": _pct(ttft, 95),
        "ttft_ms_p99": _pct(ttft, 99),
        "e2e_ms_p50": _pct(e2e, 50),
        "e2e_ms_p95": _pct(e2e, 95),
        "e2e_ms_p99": _pct(e2e, 99),
        "output_tokens": float(out_tokens),
    }
    if tpot:
        m["tpot_ms_p50"] = _pct(tpot, 50)
        m["tpot_ms_p95"] = _pct(tpot, 95)
    if len(itl):
        m["itl_ms_p99"] = _pct(itl, 99)
    if slo.set:
        good = 0
        for r in done:
            ttft_ok = slo.ttft_ms is None or (r.token_times[0] - r.arrival) * 1e3 <= slo.ttft_ms
            per_tok = (
                (r.token_times[-1] - r.token_times[0]) * 1e3 / (r.output_tokens - 1)
                if r.output_tokens > 1
                else 0.0
            )
            tpot_ok = slo.tpot_ms is None or per_tok <= slo.tpot_ms
            good += ttft_ok and tpot_ok
        m["goodput_req_s"] = good / makespan
    if len({r.priority for r in done}) > 1:
        for q in (50, 95):
            for cls, value in priority_ttft(trace, q).items():
                m[f"ttft_ms_p{q}_prio{cls}"] = value
    if waves:
        m["padding_waste_pct"] = padding_waste_pct(trace.waves)
    for key, value in trace.stats.items():
        m[key] = float(value)
    return m


def priority_ttft(trace: RoundTrace, q: float = 50) -> dict[int, float]:
    """TTFT percentile ``q`` (ms) per priority class of one round."""
    by_class: dict[int, list[float]] = {}
    for r in trace.requests:
        if r.first_token is not None:
            by_class.setdefault(r.priority, []).append((r.first_token - r.arrival) * 1e3)
    return {k: _pct(v, q) for k, v in sorted(by_class.items())}
