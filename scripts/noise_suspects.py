#!/usr/bin/env python3
"""Suspects of the CI machine class's run-to-run noise, tested one by one (docs/results/).

Each suspect is an A/B job of the plugin itself: the reference is the default profile, the
candidate the profile with the suspect changed; pairs of fresh engine processes alternate
(ABBA) over three cases of the batch sweep. Per case and side it prints the between-run
coefficient of variation of output tok/s and the candidate/reference ratio; a suspect that
helps lowers the CV (or raises throughput) without the other getting worse.

    python scripts/noise_suspects.py --pairs 10 --out /tmp/suspects      # about 5 min each
    python scripts/noise_suspects.py --analyse /tmp/suspects

The sampler suspect cannot be paired (the sampler runs in pytest's own process, shared by
both sides): it runs as alternating jobs with and without it, compared by their CVs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

SUITE = ["suites/test_batch_sweep.py", "--batchperf-batch-sizes", "8", "-k", "sequential or B8"]
SUSPECTS = {
    # glibc's malloc asks for transparent huge pages (THP is "madvise" on this kind)
    "thp": ['env={GLIBC_TUNABLES="glibc.malloc.hugetlb=1"}'],
    "thp-no-mmap": ['env={GLIBC_TUNABLES="glibc.malloc.hugetlb=1"}', "use_mmap=false"],
    # llama.cpp's OpenMP threads pinned one per core
    "pinned": ['env={OMP_PROC_BIND="close",OMP_PLACES="cores"}'],
    "mlock": ["use_mlock=true"],
}


def run(args: list[str], out: Path, env: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *SUITE,
        "-p",
        "no:cacheprovider",
        "-q",
        "--benchmark-disable",
        "--batchperf-report",
        str(out),
        *args,
    ]
    with open(out / "log.txt", "w") as log:
        subprocess.call(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    return json.loads((out / "results.json").read_text())


def cv(values: list[float]) -> float:
    logs = [math.log(v) for v in values if v and v > 0]
    return statistics.stdev(logs) if len(logs) > 1 else math.nan


def summaries(metric: dict) -> list[float]:
    return [statistics.median([x for x in r if x is not None]) for r in metric["rounds"] if r]


def analyse(out: Path) -> None:
    print("| suspect | case | CV reference | CV candidate | candidate / reference |")
    print("| --- | --- | --- | --- | --- |")
    for path in sorted(out.glob("*/results.json")):
        name = path.parent.name
        data = json.loads(path.read_text())
        for cid, case in sorted(data["cases"].items()):
            short = cid.split("::")[-1]
            cand = summaries(case["metrics"]["output_tok_s"])
            if data.get("mode") == "ab":
                ref = summaries(case["reference"]["output_tok_s"])
                ratio = math.exp(statistics.mean(math.log(b / a) for a, b in zip(ref, cand)))
                print(f"| {name} | {short} | {cv(ref):.1%} | {cv(cand):.1%} | {ratio:.3f} |")
            else:
                print(f"| {name} | {short} | - | {cv(cand):.1%} | - |")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--out", default="suspects")
    p.add_argument("--only", help="comma-separated suspects")
    p.add_argument("--analyse", metavar="DIR")
    a = p.parse_args()
    if a.analyse:
        analyse(Path(a.analyse))
        return 0
    out = Path(a.out)
    chosen = a.only.split(",") if a.only else [*SUSPECTS, "sampler"]
    for name in chosen:
        if name == "sampler":
            for k, interval in enumerate(("0.02", "0", "0.02", "0")):
                run(
                    [
                        "--batchperf-save",
                        f"--batchperf-runs={a.pairs}",
                        "--batchperf-baseline-dir",
                        str(out / "baselines"),
                    ],
                    out / f"sampler-{k}-{interval}",
                    {"BATCHPERF_SAMPLE_INTERVAL_S": interval},
                )
            continue
        sets = [x for knob in SUSPECTS[name] for x in ("--batchperf-set", knob)]
        undo = [x for knob in SUSPECTS[name] for x in ("--batchperf-reference", _default(knob))]
        run([*sets, *undo, f"--batchperf-pairs={a.pairs}", "--batchperf-extend=0"], out / name)
        print(f"{name}: done", flush=True)
    analyse(out)
    return 0


def _default(knob: str) -> str:
    """The reference's value of a knob the candidate changes: the default profile's."""
    key = knob.split("=", 1)[0]
    return {"env": "env={}", "use_mmap": "use_mmap=true", "use_mlock": "use_mlock=false"}[key]


if __name__ == "__main__":
    sys.exit(main())
