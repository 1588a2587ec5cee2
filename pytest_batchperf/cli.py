"""The ``batchperf`` command: rebuild reports, compare runs, merge shards, manage baselines,
audit this runner's noise, measure the gate on this runner, build llama.cpp's own tools.

Exit status: 0 fine, 1 a case regressed (compare) or the gate missed its targets
(gate-quality), 2 bad input (one line on stderr). Heavy modules load per command.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .judge import DEFAULT_ALPHA
from .options import DEFAULT_PAIRS

if TYPE_CHECKING:
    from .judge.gate import GatePolicy
    from .judge.results import RunResults


class CliError(Exception):
    """Bad input: printed as one line, exit status 2."""


def read_results(path: str) -> RunResults:
    """A results.json or a baseline file (one layout), validated like a baseline."""
    from .judge import baseline as baselines
    from .judge.baseline import BaselineError

    try:
        run = baselines.load(path)
    except BaselineError as exc:
        raise CliError(str(exc)) from None
    if run is None:
        raise CliError(f"{path}: no such file")
    return run


def _policy(args: Any, recorded: Any) -> GatePolicy:
    """The policy the run recorded, with the command line's choices on top."""
    from .judge.catalog import parse_tolerances
    from .judge.gate import GatePolicy

    try:
        tolerances = parse_tolerances(args.tolerance)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    alpha = args.alpha if args.alpha is not None else recorded.get("alpha", DEFAULT_ALPHA)
    if not 0 < alpha < 1:
        raise CliError(f"--alpha must be between 0 and 1, got {alpha}")
    policy = GatePolicy.from_dict(recorded)
    return replace(
        policy,
        tolerances={**policy.tolerances, **tolerances},
        alpha=alpha,
        strict=args.strict or policy.strict,
    )


def _print_summary(run: RunResults) -> None:
    from . import report

    for line in report.terminal_lines(run):
        print(line)


def _write(run: RunResults, out: str | None) -> None:
    from . import report

    if out is None:
        return
    written, errors = report.write_all(run, Path(out))
    if errors:
        raise CliError(f"cannot write reports: {errors[0]}")
    print(f"reports written to {out} ({', '.join(p.name for p in written)})")


def cmd_report(args: Any) -> int:
    run = read_results(args.results)
    _print_summary(run)
    _write(run, args.output)
    return 0


def cmd_compare(args: Any) -> int:
    from .judge.gate import compare_runs

    base, current = read_results(args.baseline), read_results(args.current)
    policy = _policy(args, current.gate)
    if (base.profile, base.hardware_class) != (current.profile, current.hardware_class):
        print(
            f"note: comparing {current.profile} on {current.hardware_class} with "
            f"{base.profile} on {base.hardware_class}",
            file=sys.stderr,
        )
    run = compare_runs(replace(current, kind="run"), base, policy, args.baseline)
    _print_summary(run)
    _write(run, args.output)
    failed = [c.case_id for c in run.cases.values() if policy.fails(c.verdict)]
    for case_id in failed:
        print(f"FAILED {case_id}: {run.cases[case_id].verdict.value}", file=sys.stderr)
    suite = [c for c in run.suite if policy.fails(c.verdict)]
    for c in suite:
        print(f"FAILED suite-wide: {c.metric} {c.verdict.value}", file=sys.stderr)
    return 1 if failed or suite else 0


def cmd_merge(args: Any) -> int:
    from .judge.merge import MergeError, merge

    try:
        run = merge([read_results(p) for p in args.shards], args.shards)
    except MergeError as exc:
        raise CliError(str(exc)) from None
    _print_summary(run)
    _write(run, args.output)
    return 0


def cmd_baseline_show(args: Any) -> int:
    base = read_results(args.file)
    print(
        f"{args.file}: {base.kind} of profile {base.profile} on {base.hardware_class}, "
        f"{len(base.cases)} cases, created {base.created or '-'}"
    )
    env = base.environment
    engine = env.get("engine", {}) if isinstance(env.get("engine"), dict) else {}
    for key, value in (
        ("python", env.get("python")),
        ("gpu", env.get("gpu")),
        ("driver", env.get("driver")),
        ("cpu", env.get("cpu")),
        ("model_hash", engine.get("model_hash")),
    ):
        if value:
            print(f"  {key}: {value}")
    if base.kind == "baseline":
        print(f"  jobs: {len(base.jobs)}, the fewest any case holds {base.saved_jobs}")
        for job in base.jobs:
            commit = f" commit {job.commit[:12]}" if job.commit else ""
            print(f"    {job.created or '-'} {job.id}{commit}")
    for case_id, case in sorted(base.cases.items()):
        m = case.metrics.get("output_tok_s")
        tok = f"{m.median:,.0f} tok/s, median of {len(m.runs)} run(s)" if m else "no output_tok_s"
        print(f"  {case_id}: {tok}")
    return 0


def cmd_baseline_promote(args: Any) -> int:
    from .judge import baseline as baselines
    from .judge.baseline import BaselineError

    run = read_results(args.results)
    if "," in run.hardware_class or "," in run.profile:
        raise CliError(
            f"{args.results}: a merge of several hardware classes or profiles "
            "cannot become one baseline; promote each shard"
        )
    if run.interrupted and not args.force:
        raise CliError(
            f"{args.results}: the run was interrupted; pass --force to promote it anyway"
        )
    path = (
        Path(args.to)
        if args.to
        else baselines.baseline_path(args.baseline_dir, run.hardware_class, run.profile)
    )
    skipped = sorted(cid for cid, c in run.cases.items() if c.error is not None or not c.metrics)
    try:
        saved = baselines.save(path, run)
    except BaselineError as exc:
        raise CliError(str(exc)) from None
    print(
        f"promoted {len(run.cases) - len(skipped)} cases of {args.results} to {path} "
        f"({len(saved.cases)} cases in the baseline)"
    )
    for cid in skipped:
        print(f"  not promoted (errored or no metrics): {cid}")
    return 0


def cmd_noise(args: Any) -> int:
    from .judge import noise

    files = list(args.files)
    if args.measure:  # the positional arguments are pytest's
        files = _measure_noise(args.measure, Path(args.out), files)
    elif not files:
        raise CliError("give baseline or results files, or --measure N to make one")
    bimodal = 0
    for path in files:
        spreads = noise.audit(read_results(path), args.metric or ("output_tok_s",))
        print(f"{path}:")
        for line in noise.table(spreads):
            print(line)
        bimodal += sum(1 for s in spreads if s.modes)
    if bimodal:
        print(
            f"{bimodal} case(s) bimodal: their runs fall into two groups (a fast and a slow "
            "placement of the engine's threads?); see docs/results/cpu-noise.md"
        )
    return 1 if bimodal else 0


def cmd_history(args: Any) -> int:
    from .judge import gate, trend
    from .judge.gate import GatePolicy
    from .report.history import lines

    base = read_results(args.file)
    if base.kind != "baseline":
        raise CliError(f"{args.file}: a run's results, not a baseline: give a baseline file")
    window, reading = gate.window(base)
    drifts = trend.drifting(window, {}, gate.SUITE_METRICS, GatePolicy().tolerance)
    for line in lines(base, trend.summary(base, reading, args.metric, drifts=drifts)):
        print(line)
    return 0


def _measure_noise(runs: int, out: Path, pytest_args: list[str]) -> list[str]:
    """One save job of ``runs`` fresh engine processes per case into ``out``; its files."""
    import subprocess

    if runs < 2:
        raise CliError(f"--measure needs at least 2 runs per case, got {runs}")
    if out.exists() and any(out.glob("*/*.json")):
        raise CliError(f"{out} already holds a baseline; give another --out")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *(pytest_args or ["suites"]),
        "-p",
        "no:cacheprovider",
        "-q",
        "--batchperf-save",
        "--batchperf-runs",
        str(runs),
        "--batchperf-baseline-dir",
        str(out),
        "--batchperf-report",
        "none",
    ]
    print("measuring:", " ".join(cmd), flush=True)
    if subprocess.call(cmd) not in (0, 1):  # 1: a case failed; what was saved still counts
        raise CliError("the measuring pytest run failed; see its output above")
    saved = sorted(str(p) for p in out.glob("*/*.json"))
    if not saved:
        raise CliError(f"the measuring run saved nothing under {out}")
    return saved


def cmd_baseline_append(args: Any) -> int:
    from .judge import DEFAULT_KEEP_JOBS
    from .judge import baseline as baselines
    from .judge.baseline import BaselineError

    runs = [(p, read_results(p)) for p in args.results]
    first = runs[0][1]
    path = (
        Path(args.to)
        if args.to
        else baselines.baseline_path(args.baseline_dir, first.hardware_class, first.profile)
    )
    taken = 0
    try:
        with baselines.updating(path) as (where, merged):
            for source, run in runs:
                why = _refused(run, merged)
                if why:
                    raise CliError(f"{source}: {why}; nothing was appended to {where}")
                skip = _not_appended(run, merged)
                if skip:
                    print(f"skipped {source}: {skip}")
                    continue
                merged = baselines.merge(merged, run, args.jobs or DEFAULT_KEEP_JOBS)
                taken += 1
            if merged is not None and taken:
                baselines.write(where, merged)
    except BaselineError as exc:
        raise CliError(str(exc)) from None
    held = f"; it holds {merged.saved_jobs} job(s)" if merged is not None and taken else ""
    print(f"appended {taken} of {len(runs)} job(s) to {path}{held}")
    return 0


def _refused(run: RunResults, base: RunResults | None) -> str | None:
    """Why ``run`` can never join ``base``'s history (one line), or None."""
    from .judge.history import SETUP_KEYS, same_setup
    from .judge.results import Mode

    if run.kind == "baseline":
        return "a baseline file, not a job's results.json"
    if run.mode is Mode.AB:
        return "an A/B run (judged against its reference, not against this history)"
    if base is None:
        return None
    if (run.profile, run.hardware_class) != (base.profile, base.hardware_class):
        return (
            f"profile {run.profile} on {run.hardware_class}, but the baseline holds "
            f"{base.profile} on {base.hardware_class}"
        )
    if not same_setup(base.environment, run.environment):
        keys = [k for k in SETUP_KEYS if base.environment.get(k) != run.environment.get(k)]
        return (
            f"another setup ({', '.join(keys)} differ): a new setup starts a new history, "
            "save or promote it"
        )
    return None


def _not_appended(run: RunResults, base: RunResults | None) -> str | None:
    """Why this job is left out of the history (a failed or partial job), or None."""
    from .judge.baseline import measured_cases
    from .judge.gate import GatePolicy

    if run.interrupted:
        return "the run was interrupted"
    if not measured_cases(run):
        return "no case measured anything"
    policy = GatePolicy.from_dict(run.gate)
    failed = [c for c in run.cases.values() if policy.fails(c.verdict)]
    failed_suite = [c for c in run.suite if policy.fails(c.verdict)]
    if failed or failed_suite:
        return f"it failed ({len(failed)} case(s), {len(failed_suite)} suite-wide metric(s))"
    if base is not None and run.jobs and run.jobs[-1].id in {j.id for j in base.jobs}:
        return f"job {run.jobs[-1].id} is already in the baseline"
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batchperf", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"pytest-batchperf {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("report", help="rebuild index.html, summary.md and results.json from a run")
    r.add_argument("results", metavar="RESULTS.json")
    r.add_argument("-o", "--output", metavar="DIR", default="reports")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser(
        "compare",
        help="judge a run against a baseline or an earlier run; exit 1 when a case regressed",
    )
    c.add_argument("baseline", metavar="A.json", help="the baseline or earlier run")
    c.add_argument("current", metavar="B.json", help="the run to judge")
    c.add_argument("-o", "--output", metavar="DIR", help="also write the reports there")
    c.add_argument(
        "--tolerance",
        action="append",
        metavar="METRIC=PCT",
        help="relative tolerance ('*' for all; repeatable)",
    )
    c.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="false-alarm rate per run of the whole suite (default: the run's)",
    )
    c.add_argument("--strict", action="store_true", help="fail inconclusive cases too")
    c.set_defaults(func=cmd_compare)

    m = sub.add_parser("merge", help="merge shards (CI runners, hardware classes) into one report")
    m.add_argument("shards", nargs="+", metavar="SHARD.json")
    m.add_argument("-o", "--output", metavar="DIR", default="reports")
    m.set_defaults(func=cmd_merge)

    b = sub.add_parser("baseline", help="show, promote or append to baselines")
    bsub = b.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = bsub.add_parser("show", help="summarise a baseline (or results) file")
    s.add_argument("file", metavar="FILE.json")
    s.set_defaults(func=cmd_baseline_show)
    pr = bsub.add_parser("promote", help="make a run's results the baseline, atomically")
    pr.add_argument("results", metavar="RESULTS.json")
    _baseline_target(pr)
    pr.add_argument("--force", action="store_true", help="promote an interrupted run too")
    pr.set_defaults(func=cmd_baseline_promote)
    ap = bsub.add_parser(
        "append",
        help="add passing jobs (CI artifacts' results.json) to a baseline's history, "
        "atomically; another class, profile or setup is refused",
    )
    ap.add_argument("results", nargs="+", metavar="RESULTS.json")
    _baseline_target(ap)
    ap.add_argument(
        "--jobs", type=int, help="jobs the baseline keeps (default 30, the oldest drop out)"
    )
    ap.set_defaults(func=cmd_baseline_append)

    q = sub.add_parser(
        "gate-quality",
        help="measure the gate on this runner: A/A false alarms "
        "and injected-slowdown detection, every repetition a fresh pytest process",
    )
    q.add_argument(
        "--suite",
        dest="suites",
        action="append",
        metavar="PATH",
        help="suite files or directories (repeatable; default: suites)",
    )
    q.add_argument("--profile", default="default", help="engine profile (default: default)")
    q.add_argument("--out", default="gate-quality", metavar="DIR", help="where data and reports go")
    q.add_argument("--aa", type=int, default=20, help="A/A repetitions (default 20)")
    q.add_argument(
        "--slowdowns", default="0.10,0.25", help="slowdown fractions (default 0.10,0.25)"
    )
    q.add_argument(
        "--per-slowdown", type=int, default=3, help="repetitions per slowdown (default 3)"
    )
    q.add_argument(
        "--save-runs", type=int, default=5, help="runs per case in the baseline (default 5)"
    )
    q.add_argument(
        "--save-jobs",
        type=int,
        default=1,
        help="save jobs (fresh pytest processes) the baseline's history gets (default 1)",
    )
    q.add_argument(
        "--baseline-dir",
        metavar="DIR",
        help="judge against the baselines there instead of saving one first",
    )
    q.add_argument(
        "--runs", type=int, default=1, help="runs per case in each repetition (default 1)"
    )
    q.add_argument("--ab", action="store_true", help="A/B jobs instead of a committed baseline")
    q.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="A/B pairs per case")
    q.add_argument(
        "--analyse",
        metavar="FILE.json",
        help="only analyse earlier data (a recorded campaign is judged by this version)",
    )
    q.add_argument(
        "--history",
        metavar="N,M",
        help="with --analyse of a recorded campaign: judge each run against the N (then M) "
        "unchanged runs before it, each one CI job (gate v4's history)",
    )
    q.add_argument(
        "--compact",
        metavar="DIR",
        help="pack a recorded campaign's run-NN-KIND/ reports (scripts/gpu/campaign.sh) "
        "into --out/campaign.json",
    )
    q.add_argument(
        "--rejudge",
        action="store_true",
        help="with --analyse: judge the recorded runs again with this version's gate; "
        "writes the result to --out",
    )
    q.add_argument(
        "pytest_args",
        nargs=argparse.REMAINDER,
        help="after --: more pytest arguments for every repetition",
    )
    q.set_defaults(func=cmd_gate_quality)

    n = sub.add_parser(
        "noise",
        help="each case's spread between engine processes (and save jobs), bimodal cases "
        "flagged; exit 1 when a case is bimodal",
    )
    n.add_argument(
        "files",
        nargs="*",
        metavar="FILE.json",
        help="baseline or results files (with --measure: pytest arguments, after --)",
    )
    n.add_argument(
        "--measure",
        type=int,
        metavar="N",
        help="save one job of N runs per case first, and audit it",
    )
    n.add_argument(
        "--out", default="noise-audit", metavar="DIR", help="where --measure saves (noise-audit)"
    )
    n.add_argument(
        "--metric",
        action="append",
        help="metric to audit (repeatable; default output_tok_s)",
    )
    n.set_defaults(func=cmd_noise)

    h = sub.add_parser(
        "history",
        help="a baseline's history: each case's trend, its change points, wild jobs, drift",
    )
    h.add_argument("file", metavar="BASELINE.json")
    h.add_argument("--metric", default="output_tok_s", help="the trend drawn (output_tok_s)")
    h.set_defaults(func=cmd_history)

    ll = sub.add_parser(
        "build-llama-cpp",
        help="build llama.cpp's own tools (llama-server ...) "
        "from the source the pinned llama-cpp-python vendors; print their paths",
    )
    ll.add_argument(
        "--target",
        action="append",
        help="cmake target (default llama-server; repeatable, e.g. llama-batched-bench)",
    )
    ll.add_argument(
        "--cache",
        help="cache directory (default $BATCHPERF_CACHE_DIR or ~/.cache/pytest-batchperf)",
    )
    ll.add_argument("--jobs", type=int, help="parallel compile jobs (default: the usable CPUs)")
    ll.add_argument(
        "-D",
        "--define",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CMake definition (repeatable), e.g. -D GGML_CUDA=ON; builds into its own directory",
    )
    ll.set_defaults(func=cmd_build_llama_cpp)
    return p


def _baseline_target(command: argparse.ArgumentParser) -> None:
    """--baseline-dir (the class and profile pick the file) or --to FILE, not both."""
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--baseline-dir",
        default="baselines",
        help="baselines/<hardware-class>/<profile>.json under this directory",
    )
    where.add_argument("--to", metavar="FILE.json", help="an explicit baseline file")


def cmd_build_llama_cpp(args: Any) -> int:
    from .engines.llama_build import BuildError, build

    try:
        built = build(tuple(args.target or ["llama-server"]), args.cache, args.jobs, args.define)
    except BuildError as exc:
        raise CliError(str(exc)) from None
    for path in built.values():
        print(path)
    return 0


def cmd_gate_quality(args: Any) -> int:
    from . import quality

    if args.pytest_args and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    args.suites = args.suites or ["suites"]
    if args.analyse and not Path(args.analyse).is_file():
        raise CliError(f"{args.analyse}: no such file")
    if args.compact and not Path(args.compact).is_dir():
        raise CliError(f"{args.compact}: no such directory")
    if args.rejudge and not args.analyse:
        raise CliError("--rejudge re-judges recorded data: give it with --analyse FILE.json")
    args.slowdowns = _slowdowns(args)
    if not (args.analyse or args.compact) and not quality.schedule(
        args.aa, args.per_slowdown, args.slowdowns
    ):
        raise CliError("nothing to measure: give --aa N or --slowdowns with --per-slowdown N")
    try:
        return quality.main(args)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CliError(str(exc)) from None


def _slowdowns(args: Any) -> list[float]:
    try:
        return [float(x) for x in args.slowdowns.split(",") if x.strip()]
    except ValueError:
        raise CliError(
            f"--slowdowns takes fractions such as 0.1,0.25, got {args.slowdowns!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except CliError as exc:
        print(f"batchperf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("batchperf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `batchperf compare ... | head`: the reader stopped early. No traceback, and
        # not 0 either: a verdict nobody read must not pass for a clean run (128+SIGPIPE,
        # as shell tools exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
