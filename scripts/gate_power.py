"""The gate's power curves on the simulated runner (tests/gate_sim.py): the share of whole
runs that fail against a uniform slowdown, per mode and noise, the false alarms at 0 %.

    python scripts/gate_power.py --trials 40 --out docs/gate-power

writes gate-power.json (the rates), gate-power.png (the plot) and gate-power.md (the table
that docs/gate.md quotes); a scenario already in the JSON (same trials) is not run again.

    python scripts/gate_power.py --history --trials 200 --shift-trials 80 --out OUT

judges committed jobs against histories of 5-30 CI jobs (one run per case each) at a shared
job sd of 2, 5 and 16 %, plus a history with one wild job, one with an old change point and
two of GPU runners, into OUT.json and OUT.md. `--package CHECKOUT` judges with that
checkout's package instead (gate v3 in docs/gate.md: a worktree of commit 36e1346).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
if "--package" in sys.argv:  # another checkout's gate judges (before gate_sim imports it)
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, sys.argv[sys.argv.index("--package") + 1])

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


HISTORY_JOBS = (5, 10, 20, 30)
HISTORY_SD = (0.02, 0.05, 0.16)
HISTORY_SHIFTS = (0.0, 0.05, 0.10, 0.15, 0.25)
HISTORY_CASES = 10  # a third of the suite's cases: the rates per run move little with them


def history_scenarios() -> dict[str, tuple[Design, Noise]]:
    out = {}
    for sd in HISTORY_SD:
        for jobs in HISTORY_JOBS:
            design = Design(cases=HISTORY_CASES, jobs=jobs, k=1)
            out[f"{jobs} jobs, shared job sd {sd:.0%}"] = (design, Noise(job_shared=sd))
    base = Design(cases=HISTORY_CASES, jobs=20, k=1)
    out["20 jobs, 5 %, one job 40 % slower"] = (
        replace(base, wild_job=math.log(0.6)),
        Noise(job_shared=0.05),
    )
    out["20 jobs, 5 %, older 10 jobs 20 % faster"] = (
        replace(base, old_step=math.log(1.2)),
        Noise(job_shared=0.05),
    )
    # the H100's jobs and runs agree within about 1 % (docs/results/h100-gate-campaign.md)
    gpu = Noise(round=0.005, process=0.01, job_shared=0.01)
    for jobs in (3, 12):
        out[f"GPU, {jobs} jobs 1 % apart, tolerance 5 %"] = (
            Design(cases=HISTORY_CASES, jobs=jobs, k=1, device="cuda", tolerance=0.05),
            gpu,
        )
    return out


def history(trials: int, shift_trials: int, out: Path) -> None:
    """Whole runs failed per history scenario: A/A at ``trials``, each shift at
    ``shift_trials`` runs (resumes from OUT.json)."""
    from pytest_batchperf.judge import gate

    v4 = hasattr(gate, "window")
    if not v4:  # gate v3: the whole file, its priors on metrics alone
        v3 = gate.priors
        gate.window = lambda h: (h, None)  # type: ignore[attr-defined]
        gate.priors = lambda cases: v3(getattr(c, "metrics", c) for c in cases)
    done = out.with_suffix(".json")
    old = json.loads(done.read_text()) if done.exists() else {}
    rates: dict[str, list[float]] = old.get("failed_runs", {})
    drifts: dict[str, float] = old.get("drift_reported_a_a", {})
    for i, (label, (design, noise)) in enumerate(history_scenarios().items()):
        if label not in rates:
            rates[label] = [
                round(
                    rate(
                        trials if s == 0 else shift_trials,
                        1000 + 100 * i + j,
                        lambda rng, d=design, n=noise, s=s: judge_committed(
                            *committed(rng, d, n, math.log1p(s)), d
                        ),
                    )[0],
                    3,
                )
                for j, s in enumerate(HISTORY_SHIFTS)
            ]
        if label not in drifts and v4:
            drifts[label] = round(_false_drift(trials, 2000 + i, design, noise), 3)
        print(label, rates[label], "drift reported in A/A:", drifts.get(label), flush=True)
        data = {
            "trials": trials,
            "shift_trials": shift_trials,
            "cases": HISTORY_CASES,
            "slowdowns": list(HISTORY_SHIFTS),
            "failed_runs": rates,
            "drift_reported_a_a": drifts,
        }
        done.write_text(json.dumps(data, indent=1) + "\n")
    out.with_suffix(".md").write_text(table(data))


def _false_drift(trials: int, seed: int, design: Design, noise: Noise) -> float:
    """The share of A/A runs in which some case is reported as drifting."""
    import random

    from pytest_batchperf.judge import gate, trend

    rng, found = random.Random(seed), 0
    policy = gate.GatePolicy()
    for _ in range(trials):
        base, cand, _ = committed(rng, design, noise, 0.0)
        window = gate.window(base)[0]
        found += bool(trend.drifting(window, cand.cases, gate.SUITE_METRICS, policy.tolerance))
    return found / trials


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
    ap.add_argument("--history", action="store_true", help="the history scenarios (gate v4)")
    ap.add_argument("--shift-trials", type=int, default=80)
    ap.add_argument("--package", metavar="CHECKOUT", help="judge with this checkout's gate")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.history:
        history(args.trials, args.shift_trials, out)
        return
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
