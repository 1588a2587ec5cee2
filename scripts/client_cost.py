"""CPU time the openai-http engine's client spends per streamed token, measured against the
test suite's stdlib server: how many tokens per second one core of this client can take,
to set against what a server streams (docs/results/vllm-serve.md).

    python scripts/client_cost.py [--batch 128] [--requests 256] [--tokens 64] [--reps 5]

The server runs in its own process, so this process's CPU time is the client's alone
(the engine in-process: request admission, HTTP, SSE parsing, token timestamps).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "helpers")]

from pytest_batchperf.engines import load_in_process  # noqa: E402
from pytest_batchperf.profiles import Profile  # noqa: E402
from pytest_batchperf.workload import Strategy, WorkloadSpec, build, fixed  # noqa: E402

SERVER = ROOT / "tests" / "helpers" / "misbehaving_server.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--token-delay", default="0.005", help="the server's pause between tokens")
    args = ap.parse_args()
    command = ["{python}", str(SERVER), "--port", "{port}", "--token-delay", args.token_delay]
    profile = Profile("client-cost", "openai-http", "synthetic:tiny", "cpu", {"command": command})
    engine = load_in_process(profile.engine_spec())
    spec = WorkloadSpec(num_requests=args.requests, prompt=fixed(32), output=fixed(args.tokens))
    wl = build(spec, engine.vocab_size)
    try:
        engine.warmup()
        per_token, rates = [], []
        for _ in range(args.reps):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            trace = engine.run_round(wl, Strategy.CONTINUOUS, args.batch)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            tokens = sum(r.output_tokens for r in trace.requests)
            per_token.append(1e6 * cpu / tokens)
            rates.append(tokens / wall)
    finally:
        engine.close()
    us = statistics.median(per_token)
    print(f"client CPU per token: {us:.1f} us (reps {', '.join(f'{x:.1f}' for x in per_token)})")
    print(f"one core of this client takes {1e6 / us:,.0f} tokens/s")
    print(f"streamed here: {statistics.median(rates):,.0f} tokens/s at B{args.batch}")


if __name__ == "__main__":
    main()
