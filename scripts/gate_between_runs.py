#!/usr/bin/env python3
"""What a baseline saved from K separate runs would buy: an offline re-analysis of a
``gate_quality.py measure --fresh`` file (docs/gate-quality.md, "What next").

    python scripts/gate_between_runs.py docs/gate-quality-data/fresh-default.json 5

For each case, K consecutive A repetitions form the baseline. Every other A repetition and
every slowed one is judged on output_tok_s two ways, both needing the median beyond the
tolerance: (1) the gate's rule, Welch's t on log rounds against the latest baseline run;
(2) the same AND a between-run test: the current run's log median against the K baseline
run medians as a t prediction interval (df = K - 1).
"""
import json
import sys
from collections import defaultdict

import numpy as np
from scipy import stats

ALPHA, TOLERANCE = 0.01, 0.10


def judge(base_runs: list[np.ndarray], cur: np.ndarray) -> tuple[bool, bool]:
    """(regressed by the gate's rule, regressed by it AND the between-run test)."""
    medians = np.log([np.median(b) for b in base_runs])
    current = np.log(np.median(cur))
    if np.exp(current - medians.mean()) > 1 - TOLERANCE:
        return False, False
    welch = stats.ttest_ind(np.log(cur), np.log(base_runs[-1]), equal_var=False).pvalue < ALPHA
    k = len(medians)
    t = (current - medians.mean()) / (medians.std(ddof=1) * np.sqrt(1 + 1 / k))
    return welch, welch and 2 * stats.t.sf(abs(t), k - 1) < ALPHA


def main(path: str, k: int) -> None:
    by = defaultdict(dict)  # (case, slowdown) -> rep -> round samples
    for run in json.loads(open(path).read())["runs"]:
        by[(run["case"], run["slowdown"])][run["rep"]] = np.array(
            run["metrics"]["output_tok_s"]["samples"], float)
    tally = defaultdict(lambda: [0, 0, 0])
    for case in sorted({c for c, _ in by}):
        reps = sorted(by[(case, 0.0)])
        for start in range(0, len(reps) - k + 1, k):
            chosen = reps[start:start + k]
            base = [by[(case, 0.0)][r] for r in chosen]
            judged = [("A/A", by[(case, 0.0)][r]) for r in reps if r not in chosen]
            judged += [(f"{s:.0%} slowdown", cur) for (c, s), runs in by.items()
                       if c == case and s > 0 for cur in runs.values()]
            for label, cur in judged:
                one, both = judge(base, cur)
                t = tally[label]
                t[0], t[1], t[2] = t[0] + one, t[1] + both, t[2] + 1
    for label, (one, both, n) in sorted(tally.items()):
        print(f"{label}: regressed by the gate's rule {one}/{n} ({one / n:.1%}); "
              f"with the between-run test (K={k}) {both}/{n} ({both / n:.1%})")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
