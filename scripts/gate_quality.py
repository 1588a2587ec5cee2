#!/usr/bin/env python3
"""Measure the gate's false-alarm rate (A/A) and detection power (A/B, injected slowdowns).

    python scripts/gate_quality.py measure --out gate.json          # minutes to an hour
    python scripts/gate_quality.py analyse gate.json                 # seconds; re-run freely
    python scripts/gate_quality.py analyse gate.json --alpha 0.05 --tolerance '*=5' --rounds 3
    python scripts/gate_quality.py merge --out all.json machine1.json machine2.json

``measure`` loads the profile's engine ONCE, in this process, and measures the same cases
(the suites' SWEEP workload; warm-up and rounds as the plugin's defaults, through
``runner.measure``) many times over: repetitions with no slowdown are the A/A runs, and
repetitions with the engine's real ``slowdown`` knob set (llama-cpp sleeps that fraction of
each llama_decode call's own duration) are the A/B runs. Slowed repetitions are spread
evenly among the unslowed ones, so drift of the machine hits both alike. Every case's raw
round samples are written to the JSON file after each repetition (an interrupted run keeps
what it measured).

``analyse`` judges them with the gate's own code (``gate.compare_case`` and ``GatePolicy``):
each A repetition against the first one (as a saved baseline is used), and every pair of A
repetitions; each slowed repetition against every A repetition. Since it only needs the
samples, other tolerances, alphas and fewer rounds (the first K of each case) can be tried
without measuring again: that is how the defaults were chosen (docs/gate-quality.md).

Repeated in-process measurement leaves out what differs between processes (engine start-up,
memory layout, CPU placement); ``measure --fresh`` runs every repetition in a new process
instead (``one``, the worker), as separate CI runs are, and is the figure that matters for a
gate; docs/gate-quality.md has both.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pytest_batchperf import engines, environment
from pytest_batchperf.atomic import write_atomic
from pytest_batchperf.catalog import METRICS, Direction, Kind, parse_tolerances
from pytest_batchperf.decision import Verdict
from pytest_batchperf.gate import GatePolicy, compare_case
from pytest_batchperf.options import Options
from pytest_batchperf.profiles import parse_overrides, recorded_tolerances, resolve
from pytest_batchperf.results import CaseResult, MetricSamples, RunResults
from pytest_batchperf.runner import CaseSpec, measure, to_case
from pytest_batchperf.strategies import Strategy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = "static:1,continuous:1,static:8,continuous:8"


def _suite_workload(name: str):
    spec = importlib.util.spec_from_file_location("workloads", ROOT / "suites" / "workloads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _cases(text: str) -> list[tuple[Strategy, int]]:
    out = []
    for item in text.split(","):
        strategy, _, size = item.partition(":")
        out.append((Strategy.parse(strategy), int(size)))
    return out


def _schedule(aa: int, ab: int, slowdowns: list[float]):
    """(rep of each config, slowdown) in run order: slowed reps spread among the A reps."""
    b_slots = {round(k * aa / ab) for k in range(ab)} if ab else set()
    count = Counter()
    for r in range(aa):
        for s in [0.0] + (slowdowns if r in b_slots else []):
            yield count[s], s
            count[s] += 1


def _measure_cases(engine, profile, workload, cases, rounds, warmup) -> list[CaseResult]:
    out = []
    for strategy, size in cases:
        spec = CaseSpec(profile.sized(workload, size), strategy, size, rounds=rounds, warmup=warmup)
        started = time.monotonic()
        out.append(to_case(f"{strategy.value}-B{size}", "gate_quality", spec,
                           measure(engine, spec), started))
    return out


def _record(case: CaseResult, slowdown: float, rep: int, t: float) -> dict:
    return {"case": case.case_id, "slowdown": slowdown, "rep": rep, "t": round(t, 1),
            **case.to_dict(baseline=True), "warnings": list(case.warnings)}


def _settings(args):
    defaults = Options()
    rounds = args.rounds or defaults.rounds
    warmup = defaults.warmup if args.warmup is None else args.warmup
    workload = _suite_workload(args.workload)
    if args.requests:
        workload = replace(workload, num_requests=args.requests)
    profile = resolve(args.profile, ROOT / "pyproject.toml", overrides=parse_overrides(args.set))
    return profile, workload, rounds, warmup


def cmd_measure(args) -> int:
    profile, workload, rounds, warmup = _settings(args)
    slowdowns = [float(x) for x in args.slowdowns.split(",") if x]
    engine = None
    if not args.fresh:
        if profile.engine != "llama-cpp":
            print(f"gate_quality: engine {profile.engine!r} takes its slowdown when it starts: "
                  "use --fresh (a new process per repetition)", file=sys.stderr)
            return 2
        engine = engines.load(profile)
        engine.warmup()
    data = {
        "meta": {
            "profile": profile.describe(), "engine": engine.describe() if engine else None,
            "hardware_class": environment.hardware_class(profile.device),
            "workload": workload.to_dict(), "cases": args.cases, "rounds": rounds,
            "warmup": warmup, "aa_reps": args.aa, "ab_reps": args.ab, "slowdowns": slowdowns,
            "fresh_process": bool(args.fresh),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        },
        "runs": [],
    }
    out = Path(args.out)
    warnings.simplefilter("ignore")  # kept per case in the data instead
    t_start = time.monotonic()
    schedule = list(_schedule(args.aa, args.ab, slowdowns))
    for i, (rep, slowdown) in enumerate(schedule):
        if engine is not None:
            engine.slowdown = slowdown
            measured = _measure_cases(engine, profile, workload, _cases(args.cases), rounds, warmup)
        else:
            measured, info = _in_fresh_process(args, slowdown)
            data["meta"]["engine"] = data["meta"]["engine"] or info
        data["runs"].extend(_record(c, slowdown, rep, time.monotonic() - t_start) for c in measured)
        write_atomic(out, json.dumps(data, separators=(",", ":")) + "\n")
        print(f"[{time.monotonic() - t_start:6.0f}s] {i + 1}/{len(schedule)} slowdown={slowdown:g} "
              f"rep={rep}", flush=True)
    if engine is not None:
        engine.close()
    return 0


def _in_fresh_process(args, slowdown: float) -> tuple[list[CaseResult], dict]:
    """One repetition in a new Python process: the engine starts afresh, as in a new CI
    run (memory layout, compiled kernels, CPU placement, clocks all drawn anew)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "one.json"
        cmd = [sys.executable, __file__, "one", "--out", str(result), "--profile", args.profile,
               "--workload", args.workload, "--requests", str(args.requests),
               "--cases", args.cases, "--rounds", str(args.rounds),
               *(["--warmup", str(args.warmup)] if args.warmup is not None else []),
               *[x for kv in args.set for x in ("--set", kv)], "--set", f"slowdown={slowdown!r}"]
        subprocess.run(cmd, check=True)
        one = json.loads(result.read_text())
    return [CaseResult.from_dict(cid, d) for cid, d in one["cases"].items()], one["engine"]


def cmd_one(args) -> int:
    """Measure every case once, in this process (the worker of ``measure --fresh``)."""
    profile, workload, rounds, warmup = _settings(args)
    engine = engines.load(profile)
    try:
        engine.warmup()
        warnings.simplefilter("ignore")
        cases = _measure_cases(engine, profile, workload, _cases(args.cases), rounds, warmup)
        info = engine.describe()
    finally:
        engine.close()
    Path(args.out).write_text(json.dumps(
        {"engine": info, "cases": {c.case_id: c.to_dict() for c in cases}}))
    return 0


# ---------------------------------------------------------------- analysis

def _case(run: dict, rounds: int | None) -> CaseResult:
    metrics = {name: MetricSamples(name, m["unit"], m["direction"],
                                   tuple(np.nan if x is None else x for x in m["samples"][:rounds]))
               for name, m in run["metrics"].items()}
    return CaseResult(run["case"], params=run.get("params", {}), metrics=metrics)


def _judged(comparison) -> bool:
    spec = METRICS.get(comparison.metric)
    return (spec is not None and spec.kind is Kind.TIMED and spec.direction is not Direction.INFO
            and comparison.verdict is not Verdict.NEW)


class Tally:
    """Verdict counts per metric and per case comparison."""

    def __init__(self):
        self.metric = defaultdict(Counter)
        self.cases = Counter()
        self.change = defaultdict(list)  # adverse relative change of medians per metric

    def add(self, judged: CaseResult) -> None:
        self.cases[judged.verdict] += 1
        for c in judged.comparisons:
            if _judged(c):
                self.metric[c.metric][c.verdict] += 1
                adverse = -c.change if c.direction == Direction.UP.value else c.change
                self.change[c.metric].append(adverse)

    def rate(self, verdict: Verdict, metric: str | None = None) -> tuple[int, int]:
        if metric is not None:
            cnt = self.metric[metric]
            return cnt[verdict], sum(cnt.values())
        return (sum(c[verdict] for c in self.metric.values()),
                sum(sum(c.values()) for c in self.metric.values()))


def _tolerance_text(policy: GatePolicy) -> str:
    table = {**policy.profile_tolerances, **policy.tolerances}
    return f"{table} (the rest: catalog defaults)" if table else "catalog defaults"


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.1%})" if n else "-"


def cmd_analyse(args) -> int:
    data = json.loads(Path(args.data).read_text())
    meta = data["meta"]
    warnings.simplefilter("ignore")  # scipy on identical samples: the verdict handles it
    # Judged as the plugin would judge that profile's runs: its own tolerance table under
    # the user's --tolerance.
    policy = GatePolicy(parse_tolerances(args.tolerance), args.alpha, strict=False,
                        profile_tolerances=recorded_tolerances(meta["profile"]))
    by = defaultdict(dict)  # (case, slowdown) -> rep -> CaseResult
    when = {}  # (case, slowdown, rep) -> seconds since the start
    for run in data["runs"]:
        by[(run["case"], run["slowdown"])][run["rep"]] = _case(run, args.rounds)
        when[(run["case"], run["slowdown"], run["rep"])] = run["t"]
    cases = sorted({c for c, _ in by})
    slowdowns = sorted({s for _, s in by if s > 0})
    rounds = args.rounds or meta["rounds"]

    def judge(tally, case, cur, base, slowdown=0.0):
        tally.add(compare_case(by[(case, slowdown)][cur], by[(case, 0.0)][base], policy))

    vs_first, pairs, adjacent = Tally(), Tally(), Tally()
    for case in cases:
        reps = sorted(by[(case, 0.0)])
        for prev, r in zip(reps, reps[1:]):  # reps may have gaps (a subset, an interrupted run)
            judge(vs_first, case, r, reps[0])
            judge(adjacent, case, r, prev)
        for base, cur in itertools.combinations(reps, 2):
            judge(pairs, case, cur, base)

    print(f"# Gate quality: profile {meta['profile']['name']} on {meta['hardware_class']}\n")
    print(f"Measured {meta['started']} with `{meta['command']}`; workload "
          f"{meta['workload']['name']} ({meta['workload']['num_requests']} requests), cases "
          f"{', '.join(cases)}; {meta['warmup']} warm-up (until stable), {rounds} measured "
          f"rounds; alpha {policy.alpha}, tolerances {_tolerance_text(policy)}.\n")
    n_a = min(len(by[(c, 0.0)]) for c in cases)
    print(f"## A/A: {n_a} repetitions of each case, no change\n")
    print("Regressed case-metrics when a repetition is judged against the first one (a saved "
          "baseline), against the one measured just before it, and against every other one.\n")
    print("| metric | tolerance | vs first | vs previous | all pairs | inconclusive, all pairs "
          "| adverse change p99, all pairs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for metric in sorted(pairs.metric):
        p99 = np.percentile(pairs.change[metric], 99)
        print(f"| {metric} | {policy.tolerance(METRICS[metric]):.0%} | "
              f"{_pct(*vs_first.rate(Verdict.REGRESSED, metric))} | "
              f"{_pct(*adjacent.rate(Verdict.REGRESSED, metric))} | "
              f"{_pct(*pairs.rate(Verdict.REGRESSED, metric))} | "
              f"{_pct(*pairs.rate(Verdict.INCONCLUSIVE, metric))} | {p99:+.1%} |")
    print(f"| **all case-metrics** | | **{_pct(*vs_first.rate(Verdict.REGRESSED))}** | "
          f"**{_pct(*adjacent.rate(Verdict.REGRESSED))}** | "
          f"**{_pct(*pairs.rate(Verdict.REGRESSED))}** | "
          f"{_pct(*pairs.rate(Verdict.INCONCLUSIVE))} | |")
    print("| cases failing the gate | | " + " | ".join(
        _pct(t.cases[Verdict.REGRESSED], sum(t.cases.values())) for t in (vs_first, adjacent, pairs))
        + " | | |\n")

    if slowdowns:
        print("## A/B: injected slowdowns\n")
        print("Cases caught (verdict regressed) when a slowed repetition is judged against every A "
              "repetition, and against the A repetition measured just before it.\n")
        print("| slowdown | case | reps | output_tok_s change (median, all pairs) | caught, all pairs "
              "| caught, vs previous A |")
        print("| --- | --- | --- | --- | --- | --- |")
        for s in slowdowns:
            total_all, total_prev = Tally(), Tally()
            for case in cases:
                t_all, t_prev = Tally(), Tally()
                slowed = sorted(by.get((case, s), {}))
                for r in slowed:
                    for base in by[(case, 0.0)]:
                        for t in (t_all, total_all):
                            judge(t, case, r, base, s)
                    prev = max((a for a in by[(case, 0.0)] if when[(case, 0.0, a)] < when[(case, s, r)]),
                               key=lambda a: when[(case, 0.0, a)])
                    for t in (t_prev, total_prev):
                        judge(t, case, r, prev, s)
                n_all, n_prev = sum(t_all.cases.values()), sum(t_prev.cases.values())
                change = -np.median(t_all.change["output_tok_s"]) if n_all else float("nan")
                print(f"| {s:.0%} | {case} | {len(slowed)} | {change:+.1%} | "
                      f"{_pct(t_all.cases[Verdict.REGRESSED], n_all)} | "
                      f"{_pct(t_prev.cases[Verdict.REGRESSED], n_prev)} |")
            print(f"| **{s:.0%}** | **all** | | | "
                  f"**{_pct(total_all.cases[Verdict.REGRESSED], sum(total_all.cases.values()))}** | "
                  f"**{_pct(total_prev.cases[Verdict.REGRESSED], sum(total_prev.cases.values()))}** |")
        print()
    warned = [r for r in data["runs"] if r.get("warnings")]
    kinds = Counter(re.sub(r"\d+(\.\d+)?", "N", w.split(" (")[0].split(":")[0])
                    for r in warned for w in r["warnings"])
    print(f"Noise guards fired on {len(warned)} of {len(data['runs'])} measured cases: "
          + ", ".join(f"{k} ({n})" for k, n in kinds.most_common()) + ".")
    return 0


def cmd_runs(args) -> int:
    """Tally the verdicts of real pytest runs (their reports/results.json) against a baseline."""
    tally = Tally()
    for f in args.results:
        run = RunResults.from_dict(json.loads(Path(f).read_text()))
        for case in run.cases.values():
            tally.add(case)
    n = sum(tally.cases.values())
    print(f"{len(args.results)} runs, {n} cases: case-metrics regressed "
          f"{_pct(*tally.rate(Verdict.REGRESSED))}, inconclusive "
          f"{_pct(*tally.rate(Verdict.INCONCLUSIVE))}; cases failing "
          f"{_pct(tally.cases[Verdict.REGRESSED], n)}")
    for metric in sorted(tally.metric):
        k, m = tally.rate(Verdict.REGRESSED, metric)
        if k:
            print(f"  {metric}: regressed {_pct(k, m)}")
    return 0


def _identity(meta: dict) -> dict:
    """What measure files must share to be merged."""
    return {"profile": meta["profile"]["name"], "hardware_class": meta["hardware_class"],
            "cases": meta["cases"], "rounds": meta["rounds"], "warmup": meta["warmup"]}


def cmd_merge(args) -> int:
    """Several ``measure`` files of one profile and hardware class as one, in the order
    given: repetitions are renumbered so the later files' come after the earlier ones'
    (each file's ``t`` is offset likewise). Comparisons that cross files are between
    machines of one class, as a CI pool's runs are."""
    parts = [json.loads(Path(f).read_text()) for f in args.parts]
    first = _identity(parts[0]["meta"])
    for f, part in zip(args.parts, parts):
        for key, value in _identity(part["meta"]).items():
            if value != first[key]:
                print(f"gate_quality merge: {f} has {key} {value!r}, not {first[key]!r}",
                      file=sys.stderr)
                return 2
    count, offset, runs = Counter(), 0.0, []
    for part in parts:
        renumber: dict[tuple, int] = {}
        for run in sorted(part["runs"], key=lambda r: (r["rep"], r["t"])):
            key = (run["case"], run["slowdown"])
            if (key, run["rep"]) not in renumber:
                renumber[(key, run["rep"])] = count[key]
                count[key] += 1
            runs.append({**run, "rep": renumber[(key, run["rep"])], "t": run["t"] + offset})
        offset += max((r["t"] for r in part["runs"]), default=0.0)
    meta = {**parts[0]["meta"], "command": " ; ".join(p["meta"]["command"] for p in parts),
            "started": " ; ".join(p["meta"]["started"] for p in parts),
            "merged": [{"file": Path(f).name, "started": p["meta"]["started"],
                        "runs": len(p["runs"])} for f, p in zip(args.parts, parts)],
            "aa_reps": max((n for (_, s), n in count.items() if s == 0.0), default=0)}
    write_atomic(Path(args.out), json.dumps({"meta": meta, "runs": runs}, separators=(",", ":")) + "\n")
    print(f"{len(runs)} case runs from {len(parts)} files -> {args.out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="measure A/A and A/B repetitions into a JSON file")
    one = sub.add_parser("one", help="(worker of measure --fresh) every case once")
    for q in (m, one):
        q.add_argument("--out", required=True)
        q.add_argument("--profile", default="default")
        q.add_argument("--workload", default="SWEEP", help="a workload of suites/workloads.py")
        q.add_argument("--requests", type=int, default=0, help="shrink the workload to N requests")
        q.add_argument("--set", action="append", default=[],
                       help="KEY=VALUE profile knob, as the plugin")
        q.add_argument("--cases", default=DEFAULT_CASES, help="STRATEGY:BATCH,... (%(default)s)")
        q.add_argument("--rounds", type=int, default=0, help="measured rounds (default: plugin's)")
        q.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default: plugin's)")
    m.add_argument("--aa", type=int, default=30, help="repetitions without slowdown")
    m.add_argument("--ab", type=int, default=8, help="repetitions of each slowdown")
    m.add_argument("--slowdowns", default="0.05,0.10,0.25")
    m.add_argument("--fresh", action="store_true",
                   help="each repetition in a new process (as separate CI runs are)")
    a = sub.add_parser("analyse", help="judge the measured repetitions with the gate")
    a.add_argument("data")
    a.add_argument("--alpha", type=float, default=Options().alpha)
    a.add_argument("--tolerance", action="append", default=[], help="METRIC=PCT, as the plugin")
    a.add_argument("--rounds", type=int, default=None, help="use only the first N rounds")
    g = sub.add_parser("merge", help="join measure files of one profile (several machines)")
    g.add_argument("--out", required=True)
    g.add_argument("parts", nargs="+")
    r = sub.add_parser("runs", help="tally verdicts of pytest runs' results.json files")
    r.add_argument("results", nargs="+")
    args = p.parse_args(argv)
    return {"measure": cmd_measure, "one": cmd_one, "analyse": cmd_analyse,
            "runs": cmd_runs, "merge": cmd_merge}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
