"""llama-server's slot count (-np 1, 4, 8, 16) at one Poisson offered load, measured
through our openai-http engine: the four servers run side by side (idle ones cost no
CPU) and their rounds alternate, so that drift in the machine's load hits all alike.

    PYTHONPATH=. python scripts/llama_server_sweep.py [--rate 80] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from fidelity_llama_cpp import quiet  # same directory

from pytest_batchperf.engines import load_in_process as load
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.measure.offered_load import at_rate
from pytest_batchperf.profiles import declared
from pytest_batchperf.workload import Strategy, WorkloadSpec, build, fixed

SLOTS = (1, 4, 8, 16)
KEYS = (
    "output_tok_s",
    "ttft_ms_p50",
    "ttft_ms_p95",
    "tpot_ms_p50",
    "e2e_ms_p50",
    "client_cpu",
    "merged",
)


def counted(engine):
    """``engine`` that keeps, per request, the server's completion_tokens and the number of
    streamed chunks (a byte token that ends mid UTF-8 character rides in the next chunk)."""
    engine.counts, stream = [], engine._stream

    async def counting(r):
        got = await stream(r)
        engine.counts.append((r.max_output_tokens, got.usage_completion, len(got.times)))
        return got

    engine._stream = counting
    return engine


def measured(engine, workload) -> dict[str, float]:
    engine.counts.clear()
    cpu, t = time.process_time(), time.perf_counter()
    trace = engine.run_round(workload, Strategy.CONTINUOUS, 16)  # client concurrency 16
    client = (time.process_time() - cpu) / (time.perf_counter() - t)
    assert all(asked == usage for asked, usage, _ in engine.counts), engine.counts
    merged = sum(usage - chunks for _, usage, chunks in engine.counts)
    return {**round_metrics(trace), "client_cpu": client, "merged": merged}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--profiles", default="scripts/llama-server-slots.toml")
    p.add_argument("--rate", type=float, default=80.0, help="offered load, requests/s")
    p.add_argument("--requests", type=int, default=96)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    profiles = declared(None, Path(args.profiles))
    spec = at_rate(
        WorkloadSpec(
            name="np-sweep", num_requests=args.requests, prompt=fixed(32), output=fixed(64), seed=7
        ),
        args.rate,
    )
    engines = {}
    try:
        for n in SLOTS:
            engines[n] = counted(load(profiles[f"llama-server-np{n}"].engine_spec()))
        workload = build(spec, engines[1].vocab_size)
        for e in engines.values():
            e.warmup()
            measured(e, workload)  # warm-up round
        got = {n: [] for n in SLOTS}
        for _ in range(args.rounds):
            for n, e in engines.items():
                got[n].append(quiet(measured, e, workload))
    finally:
        for e in engines.values():
            e.close()
    print(
        f"offered load {args.rate:g} req/s Poisson, {args.requests} requests of 32+64 tokens, "
        f"continuous, client concurrency 16; median of {args.rounds} rounds"
    )
    print(
        "| slots | output tok/s | TTFT p50 ms | TTFT p95 ms | TPOT p50 ms | e2e p50 ms "
        "| client CPU |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, rounds in got.items():
        m = {k: statistics.median(r[k] for r in rounds) for k in KEYS}
        print(
            f"| {n} | {m['output_tok_s']:.0f} | {m['ttft_ms_p50']:.1f} | {m['ttft_ms_p95']:.1f} "
            f"| {m['tpot_ms_p50']:.2f} | {m['e2e_ms_p50']:.1f} | {m['client_cpu']:.0%} |"
        )
    merged = sum(r["merged"] for rounds in got.values() for r in rounds)
    print(f"every request: completion_tokens == max_tokens; tokens that shared a chunk: {merged:g}")


if __name__ == "__main__":
    main()
