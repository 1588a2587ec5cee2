"""What a one-run rerun against a saved baseline can detect, case by case: the smallest
adverse change of each headline metric that the gate catches with 80 % power at its share
of the run's false-alarm budget (it depends on the baseline's spread, not on the rerun's
values). Each saved run also plays the rerun once, as an in-sample check.

    python scripts/gpu/detectable.py baselines/nvidia-h100-80gb-hbm3/vllm-synthetic-8b.json
"""

from __future__ import annotations

import sys
from dataclasses import replace

from pytest_batchperf.judge import baseline, gate
from pytest_batchperf.profiles import BUILTIN as PROFILES

METRICS = ("output_tok_s", "ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p95")


def main(path: str) -> None:
    base = baseline.load(path)
    profile = PROFILES[base.profile]
    policy = gate.GatePolicy(
        looks=3, planned=1, device=profile.device, profile_tolerances=profile.tolerances
    )
    detectable: dict[str, dict[str, float | None]] = {}
    for k in range(base.runs_per_case):
        rerun = replace(
            base,
            cases={
                cid: replace(
                    c, metrics={n: replace(m, runs=m.runs[k : k + 1]) for n, m in c.metrics.items()}
                )
                for cid, c in base.cases.items()
            },
        )
        judged = gate.compare_runs(rerun, base, policy)
        verdicts = sorted(c.verdict.value for c in judged.cases.values())
        print(f"saved run {k + 1} as the rerun:", {v: verdicts.count(v) for v in set(verdicts)})
        for cid, c in judged.cases.items():
            detectable.setdefault(cid, {x.metric: x.detectable for x in c.comparisons})
    print("| case | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS))
    for cid, d in detectable.items():
        cells = ("-" if d.get(m) is None else f"{d[m]:.0%}" for m in METRICS)
        print(f"| `{cid.split('::', 1)[1]}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
