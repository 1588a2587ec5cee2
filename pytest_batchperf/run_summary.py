"""What a whole run says beside its cases, as pure functions of the run's state: the cases
missing against the baseline, the largest batch that fitted in each sweep that hit a
limit, the run-level notices, and the run's results with its suite-wide verdicts."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .device import oversubscribed
from .judge import gate, stats, trend
from .judge.history import Job
from .judge.results import CaseResult, Mode, RunResults
from .options import DEFAULT_SAVE_RUNS
from .prepared import Prepared
from .records import was_disturbed
from .workload.spec import CaseSpec

Infeasible = Mapping[str, tuple[str, CaseSpec, str]]  # case id -> (suite, spec, error)


def missing(
    baseline: Mapping[str, CaseResult], cases: Mapping[str, CaseResult], infeasible: Infeasible
) -> tuple[str, ...]:
    """The baseline's cases this run did not measure, in the suite files it ran (running
    one file does not list every other file's cases)."""
    files_run = {cid.split("::")[0] for cid in cases}
    return tuple(
        sorted(
            cid
            for cid in baseline
            if cid not in cases and cid not in infeasible and cid.split("::")[0] in files_run
        )
    )


def largest_fitting(infeasible: Infeasible, cases: Mapping[str, CaseResult]) -> dict[str, int]:
    """Case id -> its batch size, for the largest case that fitted in each sweep (suite and
    workload) where a larger batch size did not fit."""
    limits: dict[tuple, int] = {}
    for suite, spec, _ in infeasible.values():
        key = (suite, *spec.sweep_key())
        limits[key] = min(limits.get(key, spec.batch_size), spec.batch_size)
    largest: dict[tuple, tuple[int, str]] = {}
    for case in cases.values():
        if case.spec is None or not case.metrics:
            continue
        key, size = (case.suite, *case.spec.sweep_key()), case.spec.batch_size
        if key in limits and size < limits[key] and (key not in largest or size > largest[key][0]):
            largest[key] = (size, case.case_id)
    return {cid: size for size, cid in largest.values()}


def notices(
    setup: Prepared,
    policy: gate.GatePolicy,
    saving: bool,
    cases: Mapping[str, CaseResult],
    remeasured: Collection[str],
    resting_on_disturbed: Collection[str],
    engines: Collection[Mapping[str, Any]] = (),
    usable_cores: float = 0.0,
) -> tuple[str, ...]:
    """Run-level lines: no baseline for this class, a baseline too thin to know its noise,
    an engine that leaves the driver no core (``engines``: each side's description), and
    cases that other work on the machine disturbed."""
    out = []
    threads = max((e.get("compute_threads", 0) for e in engines), default=0)
    if threads and (line := oversubscribed(threads, usable_cores)):
        out.append(line)
    if setup.other_classes:
        out.append(
            f"no baseline for class {setup.hardware_class}; baselines of this profile "
            f"exist for: {', '.join(setup.other_classes)}"
        )
    base = setup.baseline
    if base is not None and not saving and base.runs_per_case <= 1:
        out.append(
            f"{setup.baseline_path} holds one run per case: it is judged conservatively; "
            f"re-save it with --batchperf-save (--batchperf-runs {DEFAULT_SAVE_RUNS})"
        )
    if base is not None and not saving and not policy.paired and base.saved_jobs < stats.MIN_JOBS:
        prior = policy.job_prior
        out.append(
            f"the baseline holds {base.saved_jobs} job(s): until it holds {stats.MIN_JOBS}, "
            f"the variance between jobs leans on this machine kind's default "
            f"({prior.s2**0.5:.0%}, worth {prior.df:.0f} jobs); add jobs with --batchperf-save "
            "or batchperf baseline append"
        )
    disturbed = set(remeasured) | {
        cid for cid, c in cases.items() for r in c.runs if was_disturbed(r.interference)
    }
    if disturbed:
        line = f"other work on the machine disturbed {len(disturbed)} case(s) (see warnings)"
        if remeasured:
            line += f"; {len(remeasured)} regressed on a disturbed run, measured again"
        if resting_on_disturbed:
            resting = ", ".join(sorted(resting_on_disturbed))
            line += f"; still disturbed, rerun on a quiet runner: {resting}"
        out.append(line)
    return tuple(out)


def history(
    setup: Prepared, policy: gate.GatePolicy, cases: Mapping[str, CaseResult]
) -> dict[str, Any]:
    """The baseline's history as this run read it (``trend.summary``), with the cases whose
    jobs drift, this job last; empty without a history."""
    if setup.history is None or setup.reading is None or setup.baseline is None:
        return {}
    drifts = trend.drifting(setup.baseline, cases, policy.suite_metrics, policy.tolerance)
    return trend.summary(setup.history, setup.reading, gate.SUITE_METRICS[0], cases, drifts)


def history_lines(history: Mapping[str, Any]) -> list[str]:
    """What a reader must know of the history: a window a change point began, jobs left
    out as wild, drift."""
    out = []
    cut = [w["start"] for w in history.get("windows", {}).values() if w.get("start")]
    if cut:
        out.append(
            f"the history changed level: {len(cut)} case(s) judged against the jobs since "
            f"{', '.join(sorted(set(cut)))} only (batchperf history shows the trend)"
        )
    wild = {j for w in history.get("windows", {}).values() for j in w.get("wild", ())}
    if wild:
        out.append(f"{len(wild)} wild job(s) of the history left out: {', '.join(sorted(wild))}")
    for d in history.get("drift", ()):
        out.append(
            f"drift: {d['case_id']} {d['metric']} {d['change']:+.1%} since job {d['since']}, "
            "each job inside the noise (not failed; look at its trend)"
        )
    return out


def run_results(
    setup: Prepared,
    policy: gate.GatePolicy,
    cases: Mapping[str, CaseResult],
    infeasible: Infeasible,
    environments: tuple[dict[str, Any], dict[str, Any] | None],
    notices: tuple[str, ...],
    *,
    saving: bool,
    interrupted: bool,
    job: Job | None = None,
) -> RunResults:
    """The run's results: its cases, what it lacks against the baseline, and the suite-wide
    verdicts (A/B mode, or a comparison with a baseline). ``environments``: the
    candidate's, and in A/B mode the reference side's."""
    ab = policy.paired
    base = setup.baseline
    base_cases = base.cases if base else {}
    compared = ab or (base is not None and not saving)
    read = history(setup, policy, cases) if compared and not ab else {}
    return RunResults(
        profile=setup.profile.name,
        hardware_class=setup.hardware_class,
        environment=environments[0],
        cases=dict(cases),
        created=setup.started,
        interrupted=interrupted,
        missing=missing(base_cases, cases, infeasible),
        mode=Mode.AB if ab else Mode.BASELINE,
        baseline_path=None if ab else str(setup.baseline_path),
        baseline_environment=environments[1] if ab else dict(base.environment) if base else None,
        gate=policy.to_dict(),
        notices=(*notices, *history_lines(read)),
        suite=gate.suite_effects(cases, policy, None if ab else base_cases) if compared else (),
        jobs=(job,) if job else (),
        history=read,
    )
