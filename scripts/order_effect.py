"""The A/B suite-wide test against an effect of a run's place in its case (issue #38), on
the simulated runner (tests/gate_sim.py): whole-run failure rates with every case opening
with the reference (before) and with cases taking turns (after), in A/A and at a slowdown.

    python scripts/order_effect.py --trials 200 --shift 0.10 --cases 3

prints one line per scenario: place effect, layout, A/A rate, rate at the slowdown.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gate_sim import Design, Noise, ab, rate

# (name, noise): the first run of a case faster or slower, a pair's second run slower
PLACES = {
    "none": Noise(process=0.05, pass_shared=0.03),
    "first run +15 %": Noise(process=0.05, pass_shared=0.03, first=0.15),
    "first run -15 %": Noise(process=0.05, pass_shared=0.03, first=-0.15),
    "second of pair -10 %": Noise(process=0.05, pass_shared=0.03, second=-0.10),
}


def _job(design: Design, noise: Noise, shift: float):
    return lambda rng: ab(rng, design, noise, shift)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--shift", type=float, default=0.10)  # the slowdown, a fraction
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    shift = math.log1p(args.shift)
    for name, noise in PLACES.items():
        for balanced in (False, True):
            design = Design(
                cases=args.cases, pairs=args.pairs, pass_order=False, counterbalance=balanced
            )
            aa = rate(args.trials, args.seed, _job(design, noise, 0.0))
            hit = rate(args.trials, args.seed + 1, _job(design, noise, shift))
            layout = "turns" if balanced else "reference first"
            print(
                f"{name:22} {layout:16} A/A fails {aa[0]:6.1%} (suite {aa[2]:6.1%})  "
                f"{args.shift:.0%} slower fails {hit[0]:6.1%} (suite {hit[2]:6.1%})"
            )


if __name__ == "__main__":
    main()
