"""llama-server's slot count (-np 1, 4, 8, 16) at one Poisson offered load, measured
through our openai-http engine: the servers run side by side (idle ones cost no CPU)
and their rounds alternate, so that drift in the machine's load hits all alike. Prints
the best slot count by output tokens/s.

    PYTHONPATH=. python scripts/llama_server_sweep.py [--rate 80] [--rounds 3]
    # on a GPU (scripts/gpu/llama_cuda.sh)
    ... --profiles scripts/gpu/llama-server-slots-cuda.toml --slots 1,8,32,64,128 \
        --concurrency 256 --requests 512 --rate 1000 --quiet-limit 0
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from fidelity_llama_cpp import QUIET, quiet  # same directory

from pytest_batchperf.engines import load_in_process as load
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.measure.offered_load import at_rate
from pytest_batchperf.profiles import declared
from pytest_batchperf.workload import Strategy, WorkloadSpec, build, fixed

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


def measured(engine, workload, concurrency: int) -> dict[str, float]:
    engine.counts.clear()
    cpu, t = time.process_time(), time.perf_counter()
    trace = engine.run_round(workload, Strategy.CONTINUOUS, concurrency)
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
    p.add_argument("--slots", default="1,4,8,16", help="profiles llama-server-np<N> to run")
    p.add_argument("--concurrency", type=int, default=16, help="client requests in flight")
    p.add_argument("--quiet-limit", type=float, default=QUIET["limit"], help="0: do not wait")
    args = p.parse_args()
    QUIET["limit"] = args.quiet_limit
    slots = [int(n) for n in args.slots.split(",")]
    profiles = declared(None, Path(args.profiles))
    spec = at_rate(
        WorkloadSpec(
            name="np-sweep", num_requests=args.requests, prompt=fixed(32), output=fixed(64), seed=7
        ),
        args.rate,
    )
    engines = {}
    try:
        for n in slots:
            engines[n] = counted(load(profiles[f"llama-server-np{n}"].engine_spec()))
        workload = build(spec, engines[1].vocab_size)
        for e in engines.values():
            e.warmup()
            measured(e, workload, args.concurrency)  # warm-up round
        got: dict[int, list] = {n: [] for n in slots}
        for _ in range(args.rounds):
            for n, e in engines.items():
                got[n].append(quiet(measured, e, workload, args.concurrency))
    finally:
        for e in engines.values():
            e.close()
    print(
        f"offered load {args.rate:g} req/s Poisson, {args.requests} requests of 32+64 tokens, "
        f"continuous, client concurrency {args.concurrency}; median of {args.rounds} rounds"
    )
    print(
        "| slots | output tok/s | TTFT p50 ms | TTFT p95 ms | TPOT p50 ms | e2e p50 ms "
        "| client CPU |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    best = {}
    for n, rounds in got.items():
        m = {k: statistics.median(r[k] for r in rounds) for k in KEYS}
        best[n] = m["output_tok_s"]
        print(
            f"| {n} | {m['output_tok_s']:.0f} | {m['ttft_ms_p50']:.1f} | {m['ttft_ms_p95']:.1f} "
            f"| {m['tpot_ms_p50']:.2f} | {m['e2e_ms_p50']:.1f} | {m['client_cpu']:.0%} |"
        )
    top = max(best, key=best.__getitem__)
    print(f"best slot count: -np {top} ({best[top]:.0f} output tok/s)")
    merged = sum(r["merged"] for rounds in got.values() for r in rounds)
    print(f"every request: completion_tokens == max_tokens; tokens that shared a chunk: {merged:g}")


if __name__ == "__main__":
    main()
