"""``batchperf gate-quality``: how often the gate cries wolf on this runner, and what it catches.

Every repetition is a fresh pytest process, as separate CI jobs are:

- committed-baseline mode: ``--save-jobs`` saves (``--batchperf-runs K`` each, appended to
  the baseline's job history), then A/A repetitions judged against it, and repetitions
  with the engine's real ``slowdown`` knob set (llama-cpp busy-waits that fraction of each
  decode call; vllm of each engine-core step), spread evenly among the A/A ones so that
  drift of the machine hits both alike;
- A/B mode (``--ab``): every repetition is one A/B job, the reference identical to the
  candidate (A/A) or the candidate slowed.

It prints, per case and for whole runs, the false-alarm rate (A/A runs that failed) and the
detection rate per slowdown, and the variance of the runs split into between-job,
between-process and between-round parts; it writes the data (``gate-quality.json``: every
repetition's verdicts and run summaries, compact) for docs and re-analysis.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .options import DEFAULT_EXTEND

KEY_METRICS = ("output_tok_s", "ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50")


@dataclass
class Repetition:
    index: int
    slowdown: float
    exit_code: int
    wall_s: float
    verdicts: dict[str, str] = field(default_factory=dict)
    changes: dict[str, float | None] = field(default_factory=dict)  # output_tok_s change
    runs: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)  # rounds per run
    ref_runs: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)  # A/B
    # smallest adverse change the gate could detect, per case and key metric
    detectable: dict[str, dict[str, float | None]] = field(default_factory=dict)
    suite: dict[str, str] = field(default_factory=dict)  # A/B: metric -> suite-wide verdict

    @property
    def failed_by_case(self) -> bool:
        return any(v in ("regressed", "error") for v in self.verdicts.values())

    @property
    def failed(self) -> bool:
        return self.failed_by_case or "regressed" in self.suite.values()

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "slowdown": self.slowdown,
            "exit_code": self.exit_code,
            "wall_s": round(self.wall_s, 1),
            "verdicts": self.verdicts,
            "changes": self.changes,
            "runs": self.runs,
            "ref_runs": self.ref_runs,
            "detectable": self.detectable,
            "suite": self.suite,
        }


def schedule(aa: int, per_slowdown: int, slowdowns: Sequence[float]) -> list[float]:
    """Slowdown of each repetition in run order (0: A/A): the slowed ones spread evenly
    among the A/A ones, the slowdown values taking turns."""
    slowed = [s for _ in range(per_slowdown) for s in slowdowns]
    total = aa + len(slowed)
    order, it = [], iter(slowed)
    for i in range(total):  # Bresenham: exactly len(slowed) marks, evenly spaced
        hit = (i + 1) * len(slowed) // total > i * len(slowed) // total
        order.append(next(it) if hit else 0.0)
    return order


def _pytest(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    started = time.monotonic()
    with open(log, "w") as out:
        code = subprocess.call(
            [sys.executable, "-m", "pytest", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return code, time.monotonic() - started


def _collected(suites: Sequence[str]) -> list[str]:
    """The suites' case ids in the order pytest runs them (A/B: the order cases ran)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *suites],
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if "::" in line and " " not in line]


def _rounds(metrics: dict) -> dict[str, list[list[float]]]:
    return {m: metrics[m]["rounds"] for m in KEY_METRICS if "rounds" in metrics.get(m, {})}


def _read(index: int, slowdown: float, code: int, wall: float, results: Path) -> Repetition:
    rep = Repetition(index, slowdown, code, wall)
    try:
        data = json.loads(results.read_text())
    except (OSError, ValueError):
        return rep
    return _fill(rep, data)


def _fill(rep: Repetition, data: dict) -> Repetition:
    """``rep`` with the verdicts, changes and runs of a results.json's data."""
    for cid, case in data.get("cases", {}).items():
        rep.verdicts[cid] = case.get("verdict", "")
        comps = {c["metric"]: c for c in case.get("comparisons", ())}
        rep.changes[cid] = comps.get("output_tok_s", {}).get("change")
        rep.detectable[cid] = {m: comps[m].get("detectable") for m in KEY_METRICS if m in comps}
        rep.runs[cid] = _rounds(case.get("metrics", {}))
        if case.get("reference"):
            rep.ref_runs[cid] = _rounds(case["reference"])
    rep.suite = {c["metric"]: c["verdict"] for c in data.get("suite", ())}
    return rep


def _committed(directory: Path, profile: str) -> tuple[dict, int]:
    """The baseline judged against (this machine's class): each metric's run summaries, as
    runs of one round, and its save jobs, so that the campaign's compact data can be judged
    again without the file."""
    from .judge import baseline
    from .measure import environment
    from .profiles import BUILTIN

    device = BUILTIN[profile].device if profile in BUILTIN else "cpu"
    path = baseline.baseline_path(directory, environment.hardware_class(device), profile)
    base = baseline.load(path)
    if base is None:
        raise ValueError(f"{path}: no baseline to judge against")
    saved = {
        cid: {name: [[x] for x in m.summaries] for name, m in case.metrics.items()}
        for cid, case in base.cases.items()
    }
    jobs = {len(m.jobs) for case in base.cases.values() for m in case.metrics.values()}
    return saved, max(jobs, default=0) or 1


def measure(
    suites: Sequence[str],
    out: Path,
    profile: str,
    aa: int,
    per_slowdown: int,
    slowdowns: Sequence[float],
    save_runs: int,
    runs: int,
    ab: bool,
    pairs: int,
    extra: Sequence[str],
    baseline_dir: Path | None = None,
    save_jobs: int = 1,
) -> list[Repetition]:
    """``baseline_dir``: judge against the baselines there instead of saving one first;
    else ``save_jobs`` save jobs (fresh pytest processes) of ``save_runs`` runs each."""
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    common = [
        *suites,
        "-p",
        "no:cacheprovider",
        "-q",
        "--batchperf-profile",
        profile,
        "--batchperf-baseline-dir",
        str(baseline_dir or out / "baselines"),
        *extra,
    ]
    saved: dict[str, dict[str, list[list[float]]]] = {}
    if baseline_dir is not None and not ab:
        saved, save_jobs = _committed(baseline_dir, profile)
        runs_in_save = {len(m) for case in saved.values() for m in case.values()}
        save_runs = max(runs_in_save, default=0) // save_jobs or save_runs
    for job in range(1, save_jobs + 1) if not ab and baseline_dir is None else ():
        where = out / f"save-{job}"
        code, wall = _pytest(
            [
                *common,
                "--batchperf-save",
                f"--batchperf-runs={save_runs}",
                "--batchperf-report",
                str(where),
            ],
            env,
            out / f"save-{job}.log",
        )
        print(
            f"save job {job}: {save_runs} runs per case in {wall:.0f} s, exit {code}",
            flush=True,
        )
        if code not in (0, 1):
            raise RuntimeError(f"the save failed (exit {code}): see {where}.log")
        # each save job is a job of save_runs processes, appended to the baseline's history
        for cid, metrics in _read(0, 0.0, 0, 0.0, where / "results.json").runs.items():
            for name, runs_ in metrics.items():
                saved.setdefault(cid, {}).setdefault(name, []).extend(runs_)
    reps = []
    for i, slowdown in enumerate(schedule(aa, per_slowdown, slowdowns), 1):
        args = [*common, "--batchperf-report", str(out / f"rep-{i}")]
        if slowdown:
            args += ["--batchperf-set", f"slowdown={slowdown}"]
        if ab:
            args += ["--batchperf-reference", "slowdown=0.0", f"--batchperf-pairs={pairs}"]
        else:
            args += [f"--batchperf-runs={runs}"]
        code, wall = _pytest(args, env, out / f"rep-{i}.log")
        rep = _read(i, slowdown, code, wall, out / f"rep-{i}" / "results.json")
        reps.append(rep)
        print(
            f"repetition {i}: slowdown {slowdown:g}, exit {code}, {wall:.0f} s, "
            f"{'FAILED' if rep.failed else 'passed'}",
            flush=True,
        )
        write_atomic(
            out / "gate-quality.json",
            json.dumps(
                {
                    "mode": "ab" if ab else "baseline",
                    "profile": profile,
                    "suites": list(suites),
                    "save_runs": save_runs,
                    "save_jobs": save_jobs if saved else 0,
                    "baseline_dir": str(baseline_dir) if baseline_dir else None,
                    "runs": runs,
                    "pairs": pairs,
                    "save": saved,
                    "repetitions": [r.to_dict() for r in reps],
                },
                separators=(",", ":"),
            )
            + "\n",
        )
    return reps


def rejudge(data: dict, where: Path) -> dict:
    """``data`` with every repetition judged again by this version's gate, from the
    results.json each repetition left in ``where`` (and, for committed-baseline data, the
    baseline saved there): the runs stay, the verdicts are today's."""
    from .judge import baseline as baselines
    from .judge.gate import GatePolicy, compare_runs, rejudge_ab
    from .judge.results import RunResults

    saved = sorted(where.glob(f"baselines/*/{data['profile']}.json"))
    # a campaign against an existing baseline keeps that baseline's runs in its data
    base = baselines.load(saved[0]) if saved else _saved_baseline(data)
    order = _collected(data["suites"]) if data["mode"] == "ab" else None
    reps = []
    for r in data["repetitions"]:
        rep = Repetition(r["index"], r["slowdown"], r["exit_code"], r["wall_s"])
        path = where / f"rep-{rep.index}" / "results.json"
        try:
            run = RunResults.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot re-judge repetition {rep.index}: {path}: {exc}") from None
        policy = GatePolicy.from_dict(run.gate)
        if data["mode"] == "ab":
            run = rejudge_ab(run, policy, order)
        else:
            run = compare_runs(run, base, policy)
        reps.append(_fill(rep, run.to_dict()).to_dict())
    return {**data, "repetitions": reps}


def _saved_baseline(data: dict) -> Any:
    """The baseline a committed-baseline campaign's data keeps (its save jobs' runs), or
    None (A/B data, or none kept)."""
    from .campaign import metric_runs
    from .judge.results import CaseResult, RunResults

    if data["mode"] == "ab" or not data.get("save"):
        return None
    jobs = data.get("save_jobs") or 1
    cases = {
        cid: CaseResult(cid, "", metrics=metric_runs(m, jobs)) for cid, m in data["save"].items()
    }
    return RunResults(data["profile"], "", {"device": "cpu"}, cases, kind="baseline")


def rejudge_compact(data: dict) -> list[tuple[Repetition, Any]]:
    """Every repetition of ``data`` judged by this version from the rounds the compact
    data keeps (no results.json needed): (the recorded repetition, today's RunResults).
    A committed-baseline campaign's save keeps its save jobs (one: the machine kind's default
    between-job variance stands in); A/B pairs are judged in the order the cases ran."""
    from .campaign import metric_runs as _metric_runs
    from .judge.gate import GatePolicy, compare_runs, rejudge_ab
    from .judge.results import CaseResult, Mode, RunResults

    env = {"device": "cpu"}
    policy = GatePolicy(looks=1 + DEFAULT_EXTEND, planned=data.get("runs") or 1)
    base = _saved_baseline(data)
    out = []
    for r in data["repetitions"]:
        rep = Repetition(r["index"], r["slowdown"], r["exit_code"], r["wall_s"], r["verdicts"])
        rep.suite = r.get("suite", {})
        cases = {
            cid: CaseResult(
                cid,
                "",
                metrics=_metric_runs(m),
                reference=_metric_runs(r["ref_runs"][cid]) if r.get("ref_runs") else {},
            )
            for cid, m in r["runs"].items()
        }
        run = RunResults(data["profile"], "", env, cases, mode=Mode(data["mode"]))
        if data["mode"] == "ab":
            pairs = data.get("pairs") or 3
            judged = rejudge_ab(run, replace(policy, planned=pairs), list(cases))
        else:
            judged = compare_runs(run, base, replace(policy, cases=len(cases)))
        out.append((rep, judged))
    return out


def side_by_side(data: dict) -> list[str]:
    """Markdown: each recorded repetition's verdict as it ran and under today's gate."""

    def verdict(failed_cases: int, suite: bool) -> str:
        parts = [f"{failed_cases} case(s)"] if failed_cases else []
        parts += ["suite-wide"] if suite else []
        return "failed: " + ", ".join(parts) if parts else "passed"

    lines = [
        "| job | slowdown | as recorded | this version | output tok/s across cases |",
        "|---|---|---|---|---|",
    ]
    from .judge.gate import GatePolicy

    fails = GatePolicy().fails
    for rep, run in rejudge_compact(data):
        bad = sum(fails(c.verdict) for c in run.cases.values())
        suite = any(fails(c.verdict) for c in run.suite)
        old_bad = sum(v in ("regressed", "error") for v in rep.verdicts.values())
        tok = next((c for c in run.suite if c.metric == "output_tok_s"), None)
        old = verdict(old_bad, "regressed" in rep.suite.values())
        lines.append(
            f"| {rep.index} | {rep.slowdown:.0%} | {old} | {verdict(bad, suite)} | "
            + (f"{tok.change:+.1%}{tok.evidence()}" if tok else "-")
            + " |"
        )
    return lines


def _rate(n: int, d: int) -> str:
    return f"{n}/{d} ({n / d:.0%})" if d else "-"


def analyse(data: dict) -> list[str]:
    """Markdown tables: false alarms and detection per case and per run; variance parts."""
    reps = [Repetition(**r) for r in data["repetitions"]]
    aa = [r for r in reps if not r.slowdown]
    slowdowns = sorted({r.slowdown for r in reps if r.slowdown})
    cases = sorted({c for r in reps for c in r.verdicts})
    head = "| case | A/A false alarms |" + "".join(f" {s:.0%} caught |" for s in slowdowns)
    head += " detectable: tok/s | TPOT p50 |"
    lines = [head, "|---" * (4 + len(slowdowns)) + "|"]

    def detectable(cid: str, metric: str) -> str:
        found = [r.detectable.get(cid, {}).get(metric) for r in aa]
        values = [x for x in found if x is not None and math.isfinite(x)]
        if not values:
            return "-"
        mid = statistics.median(values)
        return f"{mid:.1%}" if mid <= 1 else ">100%"

    def caught(rs: list[Repetition], cid: str) -> str:
        return _rate(
            sum(r.verdicts.get(cid) == "regressed" for r in rs), sum(cid in r.verdicts for r in rs)
        )

    for cid in cases:
        row = f"| `{cid}` | {caught(aa, cid)} |"
        row += "".join(f" {caught([r for r in reps if r.slowdown == s], cid)} |" for s in slowdowns)
        row += f" {detectable(cid, 'output_tok_s')} | {detectable(cid, 'tpot_ms_p50')} |"
        lines.append(row)
    whole = f"| **whole run** | {_rate(sum(r.failed for r in aa), len(aa))} |"
    for s in slowdowns:
        rs = [r for r in reps if r.slowdown == s]
        whole += f" {_rate(sum(r.failed for r in rs), len(rs))} |"
    lines.append(whole + " | |")
    if any(r.suite for r in reps):
        lines += ["", "| jobs failed by | A/A |" + "".join(f" {s:.0%} |" for s in slowdowns)]
        lines.append("|---" * (2 + len(slowdowns)) + "|")
        for label, test in (
            ("a case", lambda r: r.failed_by_case),
            ("the suite-wide test", lambda r: "regressed" in r.suite.values()),
        ):
            row = f"| {label} | {_rate(sum(map(test, aa)), len(aa))} |"
            for s in slowdowns:
                rs = [r for r in reps if r.slowdown == s]
                row += f" {_rate(sum(map(test, rs)), len(rs))} |"
            lines.append(row)
    walls = [r.wall_s for r in reps]
    if walls:
        lines += [
            "",
            f"Wall time per repetition: median {statistics.median(walls):.0f} s "
            f"(min {min(walls):.0f}, max {max(walls):.0f}).",
        ]
    parts = variance_parts(reps, data.get("save") or {})
    if parts:
        lines += [
            "",
            "| metric | between jobs | between processes | between rounds |",
            "|---|---|---|---|",
        ]
        lines += [f"| {m} | {j:.1%} | {p:.1%} | {r:.1%} |" for m, (j, p, r) in parts.items()]
        lines += [
            "",
            "Coefficients of variation (median over cases) of each level of a nested "
            "model: jobs (the pytest processes of the save and of the A/A repetitions), "
            "engine processes within a job (both sides of an A/A job; the save's runs), "
            "rounds within a process. The detectable change is the median over A/A "
            "repetitions, at the gate's alpha share and 80 % power.",
        ]
    return lines


def variance_parts(
    reps: Sequence[Repetition], saved: dict[str, dict[str, list[list[float]]]] | None = None
) -> dict[str, tuple[float, float, float]]:
    """Per key metric, the median over cases of the job, process and round components of
    the log variance (a nested random-effects ANOVA, method of moments), as CVs. A job's
    processes: an A/A repetition's runs of both sides; ``saved`` is one more job."""
    both = [(r.ref_runs, r.runs) for r in reps if not r.slowdown]
    out = {}
    for metric in KEY_METRICS:
        per_case: list[tuple[float, float, float]] = []
        cases = {c for r in reps if not r.slowdown for c in r.runs} | set(saved or {})
        for cid in sorted(cases):
            jobs = [
                [
                    [math.log(x) for x in rnd if x and x > 0]
                    for side in sides
                    for rnd in side.get(cid, {}).get(metric, [])
                ]
                for sides in [*both, ({}, saved or {})]
            ]
            jobs = [[p for p in j if len(p) > 1] for j in jobs]
            jobs = [j for j in jobs if j]
            if len(jobs) < 2:
                continue
            comps = _nested(jobs)
            if comps:
                per_case.append(comps)
        if per_case:
            job, proc, rnd = (statistics.median(c[i] for c in per_case) for i in range(3))
            out[metric] = (job, proc, rnd)
    return out


def _nested(jobs: list[list[list[float]]]) -> tuple[float, float, float] | None:
    """(job, process, round) standard deviations of log values, method of moments."""
    rounds = [x for j in jobs for p in j for x in p]
    n_r = statistics.mean(len(p) for j in jobs for p in j)
    n_p = statistics.mean(len(j) for j in jobs)
    within = [statistics.variance(p) for j in jobs for p in j]
    s2_round = statistics.mean(within)
    proc_means = [[statistics.mean(p) for p in j] for j in jobs]
    between_proc = [statistics.variance(m) for m in proc_means if len(m) > 1]
    s2_proc = max(0.0, statistics.mean(between_proc) - s2_round / n_r) if between_proc else 0.0
    job_means = [statistics.mean(m) for m in proc_means]
    s2_job = max(0.0, statistics.variance(job_means) - (s2_proc + s2_round / n_r) / n_p)
    return (math.sqrt(s2_job), math.sqrt(s2_proc), math.sqrt(s2_round)) if rounds else None


def main(args: Any) -> int:
    out = Path(args.out)
    if args.compact:
        return _compact(Path(args.compact), out)
    if args.analyse:
        data = json.loads(Path(args.analyse).read_text())
        if isinstance(data.get("runs"), list):  # a recorded campaign (campaign.py)
            return _judge_campaign(data, args, out)
        if args.rejudge and not any(Path(args.analyse).parent.glob("rep-*/results.json")):
            return _emit(side_by_side(data), out)  # the compact data alone, as in docs
        if args.rejudge:
            data = rejudge(data, Path(args.analyse).parent)
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / "gate-quality.json", json.dumps(data, separators=(",", ":")) + "\n")
    else:
        measure(
            args.suites,
            out,
            args.profile,
            args.aa,
            args.per_slowdown,
            args.slowdowns,  # fractions (cli.py parsed them)
            args.save_runs,
            args.runs,
            args.ab,
            args.pairs,
            args.pytest_args,
            Path(args.baseline_dir) if args.baseline_dir else None,
            args.save_jobs,
        )
        data = json.loads((out / "gate-quality.json").read_text())
    lines = analyse(data)
    print("\n".join(lines))
    if not args.analyse or args.rejudge:
        write_atomic(out / "gate-quality.md", "\n".join(lines) + "\n")
    return 0


def _compact(where: Path, out: Path) -> int:
    from . import campaign

    data = campaign.compact(where)
    if not data["runs"]:
        raise ValueError(f"{where}: no run-NN-KIND/results.json (scripts/gpu/campaign.sh)")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "campaign.json", campaign.dumps(data))
    print(f"{len(data['runs'])} runs -> {out / 'campaign.json'}")
    return 0


def _judge_campaign(data: dict, args: Any, out: Path) -> int:
    from . import campaign

    if args.history:
        windows = [int(n) for n in str(args.history).split(",")]
        return _emit(campaign.judge_history(data, windows), out)
    return _emit(campaign.judge(data, args.pairs, args.save_runs), out)


def _emit(lines: list[str], out: Path) -> int:
    """Print the markdown and keep it as ``out``/gate-quality.md."""
    print("\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "gate-quality.md", "\n".join(lines) + "\n")
    return 0
