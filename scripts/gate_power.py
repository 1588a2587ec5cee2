"""The gate's power curves on the simulated runner (tests/gate_sim.py): the share of whole
runs that fail against a uniform slowdown, per mode and noise, the false alarms at 0 %.

    python scripts/gate_power.py --trials 40 --out docs/gate-power

writes gate-power.json (the rates), gate-power.png (the plot) and gate-power.md (the table
that docs/gate.md quotes); a scenario already in the JSON (same trials) is not run again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gate_sim import Design, Noise, ab, committed, judge_committed, rate

SHIFTS = (0.0, 0.05, 0.10, 0.15, 0.25, 0.50, 1.0)
COMMITTED = Design()  # 30 cases, 3 saved jobs of K=5, one candidate run (c5: 5 jobs)
AB = Design(cases=21, pairs=3)
SCENARIOS = {
    "committed, 3 jobs, job noise per case 5 %": ("c", Noise(job_shared=0.0, job_case=0.05)),
    "committed, 3 jobs, shared job noise 5 %": ("c", Noise(job_shared=0.05)),
    "committed, 5 jobs, shared job noise 5 %": ("c5", Noise(job_shared=0.05)),
    "committed, 5 jobs, shared job noise 10 %": ("c5", Noise(job_shared=0.10)),
    "committed, 5 jobs, shared job noise 16 %": ("c5", Noise(job_shared=0.16)),
    "A/B 3 pairs, pass order, 3 % per pass": ("p", Noise(pass_shared=0.03)),
    "A/B 3 pairs, case order, 3 % per pass": ("o", Noise(pass_shared=0.03)),
    "A/B 3 cases x 5 pairs, case order, processes 17 %": (
        "o3",
        Noise(process=0.17, pass_shared=0.03),
    ),
}


def one(kind: str, noise: Noise, shift: float):
    if kind.startswith("c"):
        design = COMMITTED if kind == "c" else Design(jobs=5)
        return lambda rng: judge_committed(*committed(rng, design, noise, shift), design)
    design = {
        "p": AB,
        "o": Design(cases=21, pairs=3, pass_order=False),
        "o3": Design(cases=3, pairs=5, pass_order=False),
    }[kind]
    return lambda rng: ab(rng, design, noise, shift)


def table(data: dict) -> str:
    """The rates as a markdown table: false alarms at 0 %, detection at each slowdown."""
    shifts = data["slowdowns"]
    head = "| scenario | " + " | ".join(f"{s:.0%}" for s in shifts) + " |"
    rows = [head, "|---" * (len(shifts) + 1) + "|"]
    for label, ys in data["failed_runs"].items():
        rows.append(f"| {label} | " + " | ".join(f"{y:.0%}" for y in ys) + " |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--out", default="gate-power")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = out.with_suffix(".json")
    # a scenario already in the file (same trials) is kept: a long run resumes
    old = json.loads(done.read_text()) if done.exists() else {}
    rates: dict[str, list[float]] = (
        old.get("failed_runs", {}) if old.get("trials") == args.trials else {}
    )
    for i, (label, (kind, noise)) in enumerate(SCENARIOS.items()):
        if label not in rates:
            rates[label] = [
                round(rate(args.trials, 100 * i + j, one(kind, noise, math.log1p(s)))[0], 3)
                for j, s in enumerate(SHIFTS)
            ]
        print(label, rates[label], flush=True)
        data = {"trials": args.trials, "slowdowns": list(SHIFTS), "failed_runs": rates}
        done.write_text(json.dumps(data, indent=1) + "\n")

    out.with_suffix(".md").write_text(table(data))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, ys in rates.items():
        ax.plot([100 * s for s in SHIFTS], [100 * y for y in ys], marker="o", label=label)
    ax.axhline(1, color="grey", lw=0.8, ls=":")
    ax.set_xscale("symlog", linthresh=5)
    ax.set_xticks([0, 5, 10, 15, 25, 50, 100], ["0", "5", "10", "15", "25", "50", "100"])
    ax.set_xlabel("uniform slowdown of every case (%)")
    ax.set_ylabel("whole runs failed (%)")
    ax.set_title(f"Gate v3 on the simulated runner, {args.trials} runs per point")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
