#!/usr/bin/env python3
"""The plugin's side of the overhead check: the same workload as scripts/gpu/bare_vllm.py,
measured by the plugin (engine adapter + runner.measure: warm-up, rounds, sampling).

    python scripts/gpu/overhead.py [--batch 256] [--rounds 5] [--isolate]

Prints per-round output tok/s and the median as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings

from pytest_batchperf.runner import CaseSpec, measure
from pytest_batchperf.strategies import Strategy

from pytest_batchperf import engines
from pytest_batchperf.profiles import BUILTIN
from pytest_batchperf.workload import WorkloadSpec, fixed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--output", type=int, default=128)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--strategy", default="continuous")
    ap.add_argument("--profile", default="vllm-synthetic-1b")
    ap.add_argument(
        "--isolate", action="store_true", help="engine in a child process, as pytest runs it"
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    profile = BUILTIN[args.profile]
    engine = engines.start(profile) if args.isolate else engines.load(profile)
    if not args.isolate:
        engine.warmup()
    spec = WorkloadSpec(
        num_requests=args.requests,
        prompt=fixed(args.prompt),
        output=fixed(args.output),
        seed=0,
        name="overhead",
    )
    m = measure(
        engine, CaseSpec(spec, Strategy.parse(args.strategy), args.batch, rounds=args.rounds)
    )
    rates = m.metrics["output_tok_s"]
    for r in rates:
        print(f"plugin ({args.strategy}, B={args.batch}): {r:,.0f} tok/s", flush=True)
    print(
        json.dumps(
            {
                "plugin_output_tok_s": rates,
                "median": statistics.median(rates),
                "ttft_ms_p50": m.metrics["ttft_ms_p50"],
                "itl_ms_p99": m.metrics.get("itl_ms_p99"),
                "peak_gpu_mem_mib": m.metrics.get("peak_gpu_mem_mib"),
                "gpu_util_pct": m.metrics.get("gpu_util_pct"),
                "energy_j_per_tok": m.metrics.get("energy_j_per_tok"),
                "sm_clock_mhz": m.metrics.get("sm_clock_mhz"),
                "kv_cache_tokens": m.metrics.get("kv_cache_tokens"),
                "preemptions": m.metrics.get("preemptions"),
                "warnings": m.warnings,
                **vars(args),
            }
        )
    )
    engine.close()


if __name__ == "__main__":
    main()
