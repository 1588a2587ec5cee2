"""Baseline files: validated loading, locked and atomic saving.

``baselines/<hardware-class>/<profile>.json``. A file that fails validation is never
half-read (BaselineError names the file and what is wrong); a save never leaves a
half-written file (temp file, fsync, rename) and two saves at once are serialised by
a lock file, the second merging into what the first wrote.

A baseline keeps the runs of its last ``KEEP_JOBS`` jobs (``history``): a save of the same
engine and packages appends a job, and so does ``append`` of a passing CI job's results, so
the gate can see the variance between jobs (``stats``); a job after an upgrade starts the
history again. Schema 1 and 2 files still load (schema 1 as one run per case, schema 2 with
ids made up for its jobs); a save writes schema 3.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from .. import SCHEMA_VERSION
from ..atomic import write_atomic
from . import DEFAULT_KEEP_JOBS
from .history import Job, same_setup, window
from .results import MetricRuns, RunResults

OLDEST_SCHEMA = 1

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class BaselineError(Exception):
    """A baseline cannot be read or written; str() is one line naming the file."""


def baseline_path(directory: str | os.PathLike, hardware_class: str, profile: str) -> Path:
    return Path(directory) / _SAFE.sub("-", hardware_class) / f"{_SAFE.sub('-', profile)}.json"


def _validate(path: Path, data) -> None:
    def bad(why: str):
        raise BaselineError(f"{path}: not a valid batchperf baseline: {why}")

    if not isinstance(data, dict):
        bad("top level is not an object")
    version = data.get("schema_version")
    if not isinstance(version, int):
        bad("no integer schema_version")
    if version > SCHEMA_VERSION:
        raise BaselineError(
            f"{path}: written by a newer pytest-batchperf (schema {version}, this one reads "
            f"{SCHEMA_VERSION}); upgrade pytest-batchperf or re-save the baseline"
        )
    if version < OLDEST_SCHEMA:
        raise BaselineError(
            f"{path}: schema {version} is older than {OLDEST_SCHEMA} and no longer read; "
            "re-save it with --batchperf-save"
        )
    for key in ("profile", "hardware_class"):
        if not isinstance(data.get(key), str):
            bad(f"missing {key!r}")
    for key in ("environment", "tool"):
        if not isinstance(data.get(key, {}), dict):
            bad(f"{key!r} is not an object")
    cases = data.get("cases")
    if not isinstance(cases, dict):
        bad("'cases' is not an object")
    for case_id, case in cases.items():
        if not isinstance(case, dict) or not isinstance(case.get("metrics"), dict):
            bad(f"case {case_id!r} has no metrics object")
        if not isinstance(case.get("params", {}), dict):
            bad(f"case {case_id!r}: 'params' is not an object")
        for name, m in case["metrics"].items():
            if not isinstance(m, dict) or not _numeric_runs(m):
                bad(f"case {case_id!r} metric {name!r} has no runs of numeric values")


def _numbers(values) -> bool:
    return isinstance(values, list) and all(
        x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in values
    )


def _numeric_runs(m: dict) -> bool:
    """A metric's values: ``runs`` (one summary per run), ``rounds`` (per run) or, in
    schema 1, ``samples`` (the rounds of one run)."""
    if "runs" in m:
        return _numbers(m["runs"])
    if "rounds" in m:
        return isinstance(m["rounds"], list) and all(_numbers(r) for r in m["rounds"])
    return _numbers(m.get("samples"))


def load(path: str | os.PathLike) -> RunResults | None:
    """The baseline at ``path``, or None when there is none. Raises BaselineError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read baseline: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BaselineError(f"{path}: not a valid batchperf baseline: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"{path}: corrupt baseline (invalid JSON at line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); restore it from version control or re-save with --batchperf-save"
        ) from None
    _validate(path, data)
    try:
        # A results.json keeps its kind "run" (and its verdicts); a file without one is a baseline.
        return RunResults.from_dict({"kind": "baseline", **data})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BaselineError(f"{path}: not a valid batchperf baseline: {exc}") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


KEEP_JOBS = DEFAULT_KEEP_JOBS


def append_job(old: MetricRuns, new: MetricRuns, keep: int) -> MetricRuns:
    """``old``'s saved jobs and ``new``'s runs as one more job, the last ``keep`` jobs."""
    runs = tuple((x,) for x in old.summaries) + tuple((x,) for x in new.summaries)
    jobs = (*(old.jobs or (len(old.runs),)), len(new.runs))[-keep:]
    return replace(new, runs=runs[len(runs) - sum(jobs) :], jobs=jobs)


def merge(existing: RunResults | None, run: RunResults, keep_jobs: int = KEEP_JOBS) -> RunResults:
    """``existing`` with ``run``'s measured cases as one more job: cases the run did not
    measure stay as they were; a case of the same setup keeps its last ``keep_jobs`` jobs, of
    another setup starts again. Pure: the caller writes it."""
    job = run.jobs[-1] if run.jobs else Job(f"job-{run.created or 'unknown'}", run.created)
    cases = dict(existing.cases) if existing else {}
    history = existing is not None and same_setup(existing.environment, run.environment)
    for case_id in measured_cases(run):
        case = run.cases[case_id]
        old = cases.get(case_id) if history and keep_jobs > 1 else None
        metrics = {
            k: append_job(old.metrics[k], m, keep_jobs)
            if old is not None and k in old.metrics
            else m
            for k, m in case.metrics.items()
        }
        ids = window(old.jobs if old is not None else (), job.id, keep_jobs)
        cases[case_id] = replace(case, comparisons=(), metrics=metrics, jobs=ids)
    known = {j.id: j for j in (*(existing.jobs if existing else ()), job)}
    used = {i for c in cases.values() for i in c.jobs}
    return RunResults(
        profile=run.profile,
        hardware_class=run.hardware_class,
        environment=run.environment,
        cases=cases,
        kind="baseline",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        jobs=tuple(j for j in known.values() if j.id in used),
    )


def measured_cases(run: RunResults) -> list[str]:
    """The cases of ``run`` that measured something (neither errored nor skipped)."""
    return [i for i, c in run.cases.items() if c.error is None and c.metrics]


def measured(run: RunResults, path: Path) -> None:
    """Raise BaselineError unless some case of ``run`` measured something."""
    if not measured_cases(run):
        # an empty file would read as a baseline that holds nothing to compare
        raise BaselineError(
            f"{path}: no case of this run measured anything (errored or skipped): "
            "baseline left untouched"
        )


def write(path: Path, baseline: RunResults) -> None:
    """``baseline`` to ``path``, atomically (temp file, fsync, rename)."""
    text = json.dumps(baseline.to_dict(), indent=2, sort_keys=True, allow_nan=False)
    write_atomic(path, text + "\n")


@contextlib.contextmanager
def updating(path: str | os.PathLike) -> Iterator[tuple[Path, RunResults | None]]:
    """The baseline at ``path`` (None if there is none) under its lock, its directory made;
    an OSError inside becomes one BaselineError line and nothing is changed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            yield path, load(path)
    except OSError as exc:
        why = {
            errno.ENOSPC: "no space left on device",
            errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise BaselineError(f"{path}: cannot write baseline: {why}; nothing was changed") from None


def save(path: str | os.PathLike, run: RunResults, keep_jobs: int = KEEP_JOBS) -> RunResults:
    """Merge the run's successful cases into the baseline at ``path`` as one job, atomically.

    Cases the run did not measure stay as they were, so ``-k`` runs update a subset. A case
    saved before with the same setup gains this run as one more job (``keep_jobs``).
    An existing file that does not validate is left alone and BaselineError raised.
    """
    measured(run, Path(path))
    with updating(path) as (where, existing):
        merged = merge(existing, run, keep_jobs)
        write(where, merged)
        return merged


def classes_with(directory: str | os.PathLike, profile: str) -> list[str]:
    """The hardware classes under ``directory`` that hold a baseline of ``profile``."""
    name = f"{_SAFE.sub('-', profile)}.json"
    root = Path(directory)
    return sorted(p.parent.name for p in root.glob(f"*/{name}")) if root.is_dir() else []
