"""The same cases through two engines, side by side: what the HTTP path of a server costs
against the offline engine on the same machine (docs/results/vllm-serve.md).

    python scripts/server_vs_offline.py OFFLINE SERVER [--json OUT]

OFFLINE and SERVER are results.json files or baselines, of the same suite and workloads.
For each case both have, it prints the medians of the metrics below and server/offline, and
each side's spread over its rounds (max/min - 1), which says whether the difference is more
than the noise of one side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_batchperf.judge.results import RunResults

METRICS = ("output_tok_s", "ttft_ms_p50", "ttft_ms_p95", "tpot_ms_p50", "itl_ms_p99", "e2e_ms_p50")


def load(path: str) -> RunResults:
    return RunResults.from_dict(json.loads(Path(path).read_text()))


def spread(rounds: tuple[float, ...]) -> float | None:
    return max(rounds) / min(rounds) - 1 if rounds and min(rounds) > 0 else None


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def rows(offline: RunResults, server: RunResults) -> list[dict]:
    out = []
    for case_id in sorted(set(offline.cases) & set(server.cases)):
        a, b = offline.cases[case_id], server.cases[case_id]
        for name in METRICS:
            if name not in a.metrics or name not in b.metrics:
                continue
            ma, mb = a.metrics[name], b.metrics[name]
            out.append(
                {
                    "case": case_id.split("::")[-1],
                    "metric": name,
                    "offline": round(ma.median, 3),
                    "server": round(mb.median, 3),
                    "ratio": round(mb.median / ma.median, 3) if ma.median else None,
                    "spread_offline": spread(ma.rounds),
                    "spread_server": spread(mb.rounds),
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("offline")
    ap.add_argument("server")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    table = rows(load(args.offline), load(args.server))
    print("| case | metric | offline | server | server/offline | spread off. | spread srv. |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['case']} | {r['metric']} | {r['offline']:g} | {r['server']:g} | "
            f"{r['ratio']:.2f} | {pct(r['spread_offline'])} | {pct(r['spread_server'])} |"
        )
    for name in METRICS:
        ratios = [r["ratio"] for r in table if r["metric"] == name and r["ratio"]]
        if ratios:
            print(
                f"{name}: server/offline {min(ratios):.2f}-{max(ratios):.2f}, "
                f"median {statistics.median(ratios):.2f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=None, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
